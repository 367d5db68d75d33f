"""stdin and the job's defaults on agents, as on a single host: real nats-server, agents, fronts."""

from __future__ import annotations

import asyncio
import hashlib
import os

from clusterhelp import Cluster
from grpclib.const import Status
from jobdhelp import Connect, JobdLauncher, feed_stdin, read_output

from jobservice.api.v1 import jobservice_pb2 as pb

_CHUNK = 64 * 1024


async def test_stdin_is_forwarded_byte_for_byte(one_server: Cluster, connect: Connect) -> None:
    f1, f2 = one_server.fronts
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")
    data = os.urandom(3 << 20)
    for node in ("n1", "n2"):
        started = await alice1.Start(pb.StartRequest(command="sha256sum", stdin=True, node=node))
        chunks = [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)]
        assert await feed_stdin(alice2, started.job_id, *chunks) == (Status.OK, len(data))
        output = await read_output(alice1, started.job_id)
        assert output.data() == hashlib.sha256(data).hexdigest().encode() + b"  -\n"
        assert output.final is not None
        assert output.final.exit_code == 0


async def test_who_may_write_a_jobs_stdin(one_server: Cluster, connect: Connect) -> None:
    # The same answers as tests/integration/test_jobctl_stdin.py's single host.
    f1, f2 = one_server.fronts
    alice, charlie = await connect(f1, "alice"), await connect(f2, "charlie")
    bob, mallory = await connect(f2, "bob"), await connect(f1, "mallory")
    request = pb.StartRequest(command="cat", stdin=True)
    alices = (await alice.Start(request)).job_id
    charlies = (await charlie.Start(request)).job_id
    assert await feed_stdin(bob, alices, b"x") == (Status.PERMISSION_DENIED, 0)
    assert await feed_stdin(mallory, alices, b"x") == (Status.PERMISSION_DENIED, 0)
    assert await feed_stdin(alice, charlies, b"x") == (Status.NOT_FOUND, 0)
    assert await feed_stdin(charlie, alices, b"from charlie\n") == (Status.OK, 13)
    assert (await read_output(alice, alices)).data() == b"from charlie\n"  # EOF ended cat
    assert await feed_stdin(alice, alices, b"x") == (Status.FAILED_PRECONDITION, 0)
    assert await feed_stdin(charlie, charlies, b"") == (Status.OK, 0)
    without = (await alice.Start(pb.StartRequest(command="sleep", args=["1000"]))).job_id
    assert await feed_stdin(alice, without, b"x") == (Status.FAILED_PRECONDITION, 0)
    await alice.Stop(pb.StopRequest(job_id=without))


async def test_a_job_that_does_not_read_holds_its_writer_back(
    one_server: Cluster, connect: Connect
) -> None:
    f1, f2 = one_server.fronts
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")
    script = "head -c 100000 >/dev/null; echo read; exec sleep 1000"
    started = await alice1.Start(pb.StartRequest(command="sh", args=["-c", script], stdin=True))
    # Far more than every buffer on the way (gRPC windows, the request, the pipe) can hold.
    chunk = b"z" * _CHUNK
    writer = asyncio.ensure_future(feed_stdin(alice2, started.job_id, *([chunk] * 512)))
    async with alice1.Output.open() as output:  # the job has read what it reads
        await output.send_message(pb.OutputRequest(job_id=started.job_id), end=True)
        reply = await output.recv_message()
        assert reply is not None
        assert reply.chunk.data == b"read\n"
        await output.cancel()
    assert not writer.done()  # held back by the pipe: nothing buffers 32 MiB on the way
    await alice1.Stop(pb.StopRequest(job_id=started.job_id))
    assert await writer == (Status.FAILED_PRECONDITION, 0)  # the job ended: stdin closed


async def test_an_agents_job_gets_the_single_hosts_defaults(
    one_server: Cluster, connect: Connect, jobd_launcher: JobdLauncher
) -> None:
    # Home directory, PATH and HOME of the run-as account when the request sets none, exactly
    # as a single-host jobd on the same host gives them; a request's own values win.
    single = await connect(jobd_launcher.start(), "alice")
    front = await connect(one_server.fronts[0], "alice")
    script = 'echo "$(pwd)"; env | sort; id -un'
    for request in (
        pb.StartRequest(command="sh", args=["-c", script]),
        pb.StartRequest(command="sh", args=["-c", script], env=["HOME=/tmp", "X=1"], dir="/tmp"),
    ):
        here = await read_output(single, (await single.Start(request)).job_id)
        for node in ("n1", "n2"):
            request.node = node
            there = await read_output(front, (await front.Start(request)).job_id)
            assert there.data() == here.data(), node
        request.node = ""
    assert b"PATH=" in here.data()
