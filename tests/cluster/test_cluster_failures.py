"""Failures with real processes: an agent killed, a NATS server of three killed, a front killed."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from clusterhelp import Cluster
from jobdhelp import Connect, read_output
from test_cluster_rpcs import WRITER, expected

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb

# Generous: the contract's 10 s is measured by `make soak`; this only bounds a broken build.
_LOST_DEADLINE = 60.0


def _python() -> list[str]:
    """`$0` and `$1` for a shell loop that runs the writer script (`"$0" -c "$1" N`)."""
    return [sys.executable, WRITER]


async def _state_after_change(stub: JobServiceStub, job_id: int) -> pb.JobStatus:
    """The job's status once it is no longer running (polled: the change is the signal)."""
    deadline = time.monotonic() + _LOST_DEADLINE
    while True:
        status = (await stub.Status(pb.StatusRequest(job_id=job_id))).status
        if status.state != pb.JOB_STATE_RUNNING or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


async def test_a_killed_agents_jobs_become_lost(
    cluster_pki: Path, tmp_path: Path, connect: Connect
) -> None:
    with Cluster(cluster_pki, tmp_path, size=1) as cluster:
        front = cluster.start_front("f1")
        doomed = cluster.start_agent("n1")
        cluster.start_agent("n2")
        alice = await connect(front, "alice")
        job = await alice.Start(pb.StartRequest(command="sleep", args=["1000"], node="n1"))
        other = await alice.Start(pb.StartRequest(command="sleep", args=["1000"], node="n2"))
        doomed.kill()
        lost = await _state_after_change(alice, job.job_id)
        assert lost.state == pb.JOB_STATE_LOST
        assert lost.HasField("ended_at")
        assert not lost.HasField("exit_code")
        assert not lost.HasField("signal")
        listed = {j.job_id: j.state for j in (await alice.List(pb.ListRequest())).jobs}
        assert listed[job.job_id] == pb.JOB_STATE_LOST
        assert listed[other.job_id] == pb.JOB_STATE_RUNNING  # the live node's job is untouched
        output = await read_output(alice, job.job_id)  # ends, with the Lost status
        assert output.final is not None
        assert output.final.state == pb.JOB_STATE_LOST
        nodes = {n.name: n.alive for n in (await alice.Nodes(pb.NodesRequest())).nodes}
        assert nodes == {"n1": False, "n2": True}
        # The agent restarts: its old job stays Lost, and it takes new work.
        cluster.start_agent("n1")
        again = await alice.Start(pb.StartRequest(command="true", node="n1"))
        assert again.job_id > other.job_id
        assert (await alice.Status(pb.StatusRequest(job_id=job.job_id))).status.state == (
            pb.JOB_STATE_LOST
        )


async def test_a_nats_server_killed_mid_stream_loses_no_byte(
    three_servers: Cluster, connect: Connect
) -> None:
    cluster = three_servers
    f1, f2 = cluster.start_front("f1"), cluster.start_front("f2")
    cluster.start_agent("n1")
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")
    # Output over a few seconds, so the kill lands mid-stream.
    started = await alice1.Start(
        pb.StartRequest(
            command="sh",
            args=["-c", 'for i in $(seq 1 40); do "$0" -c "$1" 3; sleep 0.1; done', *_python()],
        )
    )
    following = asyncio.create_task(read_output(alice2, started.job_id))
    async with alice1.Output.open() as stream:  # wait until output flows
        await stream.send_message(pb.OutputRequest(job_id=started.job_id), end=True)
        assert await stream.recv_message() is not None
        await stream.cancel()
    victim = cluster.servers[0].process
    assert victim is not None
    victim.kill()
    output = await following
    out, err = expected(3)
    ends = [c.offset + len(c.data) for c in output.chunks]
    assert [c.offset for c in output.chunks] == [0, *ends[:-1]]
    assert len(output.data()) == 40 * (len(out) + len(err))
    assert output.data(pb.STREAM_STDOUT) == out * 40
    assert output.data(pb.STREAM_STDERR) == err * 40
    assert output.final is not None
    assert output.final.exit_code == 0

    # Service goes on with two servers of three: a start, its output, through either front.
    after = await alice2.Start(pb.StartRequest(command="echo", args=["still here"]))
    assert (await read_output(alice1, after.job_id)).data() == b"still here\n"

    # A front dies: a follower resumes at its offset through the other, nothing missed.
    half = len(output.data()) // 2
    f1.process.kill()
    f1.process.wait()
    rest = await read_output(alice2, started.job_id, offset=half)
    assert output.data()[:half] + rest.data() == output.data()


async def test_an_agent_started_before_any_front_waits_for_one(
    cluster_pki: Path, tmp_path: Path, connect: Connect
) -> None:
    # Fronts alone may create the cluster's streams: an agent that comes first waits for them,
    # stops cleanly on SIGTERM meanwhile, and is ready as soon as a front has made them.
    with Cluster(cluster_pki, tmp_path, size=1) as cluster:
        waiting = "waiting for a front to create the cluster's streams"
        early = cluster.start_agent("n1", until=waiting)
        assert early.terminate() == 0
        agent = cluster.start_agent("n1", until=waiting)
        front = cluster.start_front("f1")
        agent.wait_for_log("jobd agent n1 ready")
        alice = await connect(front, "alice")
        job = await alice.Start(pb.StartRequest(command="echo", args=["late"], node="n1"))
        assert (await read_output(alice, job.job_id)).data() == b"late\n"
