"""Every RPC through a cluster of real processes: one nats-server, two agents, two fronts."""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
import sys
from pathlib import Path

import nats
import pytest
from clusterhelp import Cluster
from grpclib.const import Status
from jobdhelp import Connect, read_output, status_of
from nats.errors import Error as NatsError

from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.cluster.connect import NatsSettings
from jobservice.cluster.connect import connect as connect_nats
from jobservice.cluster.errors import ClusterError
from jobservice.cluster.layout import front_inbox, node_inbox

# Deterministic output on both streams, in many writes: a SHA-256 chain, 64 KiB per write.
WRITER = """
import hashlib, sys
block = hashlib.sha256(b"seed").digest() * 2048
for i in range(int(sys.argv[1])):
    out = sys.stdout.buffer if i % 3 else sys.stderr.buffer
    out.write(block[: 65536 - i]); out.flush()
    block = hashlib.sha256(block).digest() * 2048
"""


def expected(writes: int) -> tuple[bytes, bytes]:
    """What `WRITER writes` prints on stdout and on stderr."""
    out: list[bytes] = []
    err: list[bytes] = []
    block = hashlib.sha256(b"seed").digest() * 2048
    for i in range(writes):
        (out if i % 3 else err).append(block[: 65536 - i])
        block = hashlib.sha256(block).digest() * 2048
    return b"".join(out), b"".join(err)


def writer(writes: int) -> pb.StartRequest:
    return pb.StartRequest(command=sys.executable, args=["-c", WRITER, str(writes)])


async def test_every_rpc_through_two_fronts(one_server: Cluster, connect: Connect) -> None:
    f1, f2 = one_server.fronts
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")

    started = await alice1.Start(
        pb.StartRequest(command="sh", args=["-c", "echo out; echo err >&2"])
    )
    assert started.status.node in {"n1", "n2"}
    status = await alice2.Status(pb.StatusRequest(job_id=started.job_id))
    assert status.status.owner == "alice"
    assert status.status.node == started.status.node
    output = await read_output(alice2, started.job_id)
    assert output.data(pb.STREAM_STDOUT) == b"out\n"
    assert output.data(pb.STREAM_STDERR) == b"err\n"
    assert output.final is not None
    assert output.final.state == pb.JOB_STATE_EXITED
    assert output.final.exit_code == 0
    listed = await alice2.List(pb.ListRequest())
    assert started.job_id in [job.job_id for job in listed.jobs]

    sleeper = await alice2.Start(pb.StartRequest(command="sleep", args=["1000"]))
    stopped = await alice1.Stop(pb.StopRequest(job_id=sleeper.job_id))
    assert stopped.status.signal == 15
    code, _ = await status_of(alice2.Stop(pb.StopRequest(job_id=sleeper.job_id)))
    assert code == Status.FAILED_PRECONDITION

    nodes = await alice1.Nodes(pb.NodesRequest())
    assert [(n.name, n.alive) for n in nodes.nodes] == [("n1", True), ("n2", True)]

    await alice2.Remove(pb.RemoveRequest(job_id=started.job_id))
    code, _ = await status_of(alice2.Status(pb.StatusRequest(job_id=started.job_id)))
    assert code == Status.NOT_FOUND
    code, _ = await status_of(read_output(alice2, started.job_id))
    assert code == Status.NOT_FOUND


async def test_start_on_a_named_node(one_server: Cluster, connect: Connect) -> None:
    alice = await connect(one_server.fronts[0], "alice")
    for node in ("n1", "n2", "n2"):
        started = await alice.Start(pb.StartRequest(command="true", node=node))
        assert started.status.node == node
    code, message = await status_of(alice.Start(pb.StartRequest(command="true", node="n9")))
    assert code == Status.INVALID_ARGUMENT
    assert "n9" in message
    code, _ = await status_of(alice.Start(pb.StartRequest(command="no-such-command-15")))
    assert code == Status.INVALID_ARGUMENT


async def test_output_is_byte_exact_through_two_fronts_at_once(
    one_server: Cluster, connect: Connect
) -> None:
    f1, f2 = one_server.fronts
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")
    started = await alice1.Start(writer(96))
    first, second = await asyncio.gather(
        read_output(alice1, started.job_id), read_output(alice2, started.job_id)
    )
    out, err = expected(96)
    for output in (first, second):
        assert output.data(pb.STREAM_STDOUT) == out
        assert output.data(pb.STREAM_STDERR) == err
        offsets = [c.offset for c in output.chunks]
        ends = [c.offset + len(c.data) for c in output.chunks]
        assert offsets == [0, *ends[:-1]]  # contiguous: nothing missing, nothing twice
        assert output.final is not None
        assert output.final.output_bytes == len(out) + len(err)
    assert first.data() == second.data()  # one order of the two streams, for every follower

    # Resumed at an offset, through the other front: exactly the rest.
    middle = len(first.data()) // 2 + 7
    rest = await read_output(alice2, started.job_id, offset=middle)
    assert rest.data() == first.data()[middle:]
    assert rest.chunks[0].offset == middle


async def test_a_follower_that_pauses_still_gets_every_byte(
    one_server: Cluster, connect: Connect
) -> None:
    """A client that reads fast, stops while the server goes on sending, then reads on.

    Reading fast grows the server's flow-control window (to 32 MiB); the pause leaves the front
    holding that much for the follower. nats-py drops what goes over a subscription's pending
    limit, and its ordered consumer counts a dropped message as delivered: with a 16 MiB limit
    the read ended short, without an error.
    """
    f1, f2 = one_server.fronts
    paused, other = await connect(f1, "alice"), await connect(f2, "alice")
    writes = 1536  # 96 MiB
    started = await paused.Start(writer(writes))
    chunks: list[pb.OutputChunk] = []
    final = whole = None
    async with paused.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=started.job_id), end=True)
        async for response in stream:
            if not response.HasField("chunk"):
                final = response.final_status
                continue
            chunks.append(response.chunk)
            if whole is None and response.chunk.offset >= 32 << 20:
                whole = await read_output(other, started.job_id)  # the pause: to the end
    assert final is not None
    ends = [c.offset + len(c.data) for c in chunks]
    assert [c.offset for c in chunks] == [0, *ends[:-1]]
    assert ends[-1] == final.output_bytes
    out, err = expected(writes)
    assert b"".join(c.data for c in chunks if c.stream == pb.STREAM_STDOUT) == out
    assert b"".join(c.data for c in chunks if c.stream == pb.STREAM_STDERR) == err
    assert whole is not None
    assert whole.data() == b"".join(c.data for c in chunks)


async def test_a_hidden_job_looks_absent_through_a_front(
    one_server: Cluster, connect: Connect
) -> None:
    f1, f2 = one_server.fronts
    charlie, alice = await connect(f1, "charlie"), await connect(f2, "alice")
    theirs = await charlie.Start(pb.StartRequest(command="true"))
    hidden = await status_of(alice.Status(pb.StatusRequest(job_id=theirs.job_id)))
    absent = await status_of(alice.Status(pb.StatusRequest(job_id=theirs.job_id + 10**9)))
    assert hidden[0] == Status.NOT_FOUND
    assert hidden[1].replace(str(theirs.job_id), "N") == absent[1].replace(
        str(theirs.job_id + 10**9), "N"
    )
    listed = await alice.List(pb.ListRequest())
    assert theirs.job_id not in [job.job_id for job in listed.jobs]
    mallory = await connect(f1, "mallory")
    code, _ = await status_of(mallory.Nodes(pb.NodesRequest()))
    assert code == Status.PERMISSION_DENIED


@pytest.mark.timeout(300)
async def test_ids_are_unique_under_500_concurrent_starts_through_two_fronts(
    one_server: Cluster, connect: Connect
) -> None:
    f1, f2 = one_server.fronts
    stubs = [await connect(f1, "charlie"), await connect(f2, "charlie")]
    responses = await asyncio.gather(
        *(stubs[i % 2].Start(pb.StartRequest(command="true")) for i in range(500))
    )
    ids = [r.job_id for r in responses]
    assert len(set(ids)) == 500
    assert all(r.status.job_id == r.job_id for r in responses)


async def test_nats_refuses_clients_without_a_cluster_role(
    one_server: Cluster, cluster_pki: Path
) -> None:
    url = one_server.servers[0].url
    ca = cluster_pki / "ca.pem"

    def settings(cert: Path) -> NatsSettings:
        return NatsSettings((url,), ca, cert, cert.with_suffix(".key"), replicas=1)

    # A user's certificate from the very CA the servers trust maps to no NATS user.
    with pytest.raises(ClusterError):
        await connect_nats(settings(cluster_pki / "alice.pem"), "a user", "_INBOX.user")
    # No client certificate at all: the TLS handshake is refused.
    bare = ssl.create_default_context(cafile=ca)
    bare.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises((NatsError, OSError)):
        await nats.connect(url, tls=bare, allow_reconnect=False, connect_timeout=5)

    # A front may not publish output; an agent may not submit starts.
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    for cert, subject, inbox in (
        (cluster_pki / "fronts" / "f1.pem", "jobd.out.1.d", front_inbox()),
        (cluster_pki / "nodes" / "n1.pem", "jobd.start.any", node_inbox("n1")),
    ):
        nc = await connect_nats(settings(cert), "a probe", inbox)
        nc._error_cb = on_error  # nats-py's hook for the server's -ERR lines
        with pytest.raises(NatsError):
            await nc.jetstream().publish(subject, b"forged", timeout=2)
        await nc.flush()  # the server's -ERR precedes its PONG
        await nc.close()
    assert sum("permissions violation" in str(e).lower() for e in errors) == 2


async def test_jobs_on_every_agent_cannot_gain_privileges(
    one_server: Cluster, connect: Connect
) -> None:
    # As under jobd serve: no setuid program a job runs gives it more than its account has.
    alice = await connect(one_server.fronts[0], "alice")
    for node in ("n1", "n2"):
        args = ["NoNewPrivs", "/proc/self/status"]
        started = await alice.Start(pb.StartRequest(command="grep", args=args, node=node))
        output = await read_output(alice, started.job_id)
        assert re.search(rb"NoNewPrivs:\s+1", output.data(pb.STREAM_STDOUT)), node
