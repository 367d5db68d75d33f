"""Retention in the cluster, with real processes: `jobctl rm`, --retain, --user-quota and
--max-finished-per-user through fronts, and the agent removing its own copy of each job."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterhelp import Cluster, Process
from grpclib.const import Status
from jobdhelp import Connect, read_output, status_of

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb

_DEADLINE = 60.0
_TIDY = ("--retain=1h", "--user-quota=200K", "--max-finished-per-user=4")


@pytest.fixture(scope="module")
def tidy(cluster_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One nats-server, agents n1 and n2, fronts f1 and f2 that apply a quota and a count."""
    with Cluster(cluster_pki, tmp_path_factory.mktemp("tidy"), size=1) as cluster:
        cluster.start_front("f1", *_TIDY)  # fronts create the streams agents wait for
        cluster.start_front("f2", *_TIDY)
        cluster.start_agent("n1")
        cluster.start_agent("n2")
        yield cluster


def _agent(cluster: Cluster, name: str) -> Process:
    """The last agent process started as `name`."""
    return [p for p in cluster.processes if p.log_path.name.startswith(f"agent-{name}-")][-1]


def _host_logs(cluster: Cluster, node: str, marker: bytes) -> list[Path]:
    """The agent host's output logs that hold `marker`."""
    logs = (cluster.workdir / f"agent-{node}" / "logs").glob("*.log")
    return [log for log in logs if marker in log.read_bytes()]


async def _gone(stub: JobServiceStub, job_id: int) -> None:
    """Until the job is removed (the change itself is the signal: polled, bounded)."""
    deadline = time.monotonic() + _DEADLINE
    while (await status_of(stub.Status(pb.StatusRequest(job_id=job_id))))[0] != Status.NOT_FOUND:
        assert time.monotonic() < deadline, f"job {job_id} was not removed"
        await asyncio.sleep(0.1)


async def _run(stub: JobServiceStub, request: pb.StartRequest) -> int:
    """Start a job and follow it to its end; its id."""
    started = await stub.Start(request)
    output = await read_output(stub, started.job_id)
    assert output.final is not None
    return started.job_id


async def test_rm_removes_the_agent_hosts_copy(tidy: Cluster, connect: Connect) -> None:
    f1, f2 = tidy.fronts
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")
    marker = f"rm-marker-{time.time_ns()}"
    job_id = await _run(alice1, pb.StartRequest(command="echo", args=[marker], node="n1"))
    assert len(_host_logs(tidy, "n1", marker.encode())) == 1
    await alice2.Remove(pb.RemoveRequest(job_id=job_id))
    # The front that removed it forgets it at once; another front learns it from its watch.
    code, _ = await status_of(alice2.Status(pb.StatusRequest(job_id=job_id)))
    assert code == Status.NOT_FOUND
    await _gone(alice1, job_id)
    _agent(tidy, "n1").wait_for_log(rf"job {job_id} was removed from the cluster")
    assert _host_logs(tidy, "n1", marker.encode()) == []
    code, _ = await status_of(read_output(alice2, job_id))
    assert code == Status.NOT_FOUND

    # Removed while its agent is down: the agent removes its copy when it comes back.
    marker = f"rm-while-down-{time.time_ns()}"
    job_id = await _run(alice1, pb.StartRequest(command="echo", args=[marker], node="n2"))
    _agent(tidy, "n2").terminate()
    await alice1.Remove(pb.RemoveRequest(job_id=job_id))
    assert len(_host_logs(tidy, "n2", marker.encode())) == 1
    tidy.start_agent("n2")
    _agent(tidy, "n2").wait_for_log("the cluster has no record of it")
    assert _host_logs(tidy, "n2", marker.encode()) == []


async def test_the_user_quota_removes_the_oldest_finished_jobs(
    tidy: Cluster, connect: Connect
) -> None:
    f1, f2 = tidy.fronts
    alice, charlie = await connect(f1, "alice"), await connect(f2, "charlie")
    others = await _run(charlie, _printing(150_000))
    # 90 KB each: the third passes alice's 200K; her oldest goes, nobody else's.
    jobs = [await _run(alice, _printing(90_000)) for _ in range(3)]
    await _gone(alice, jobs[0])
    for job_id in jobs[1:]:
        assert (await alice.Status(pb.StatusRequest(job_id=job_id))).status.output_bytes == 90_000
    assert (await charlie.Status(pb.StatusRequest(job_id=others))).status.job_id == others
    removed = re.findall(rf"removed job {jobs[0]}\b", f1.log + f2.log)
    assert len(removed) == 1  # by one front, though both sweep


async def test_finished_jobs_per_user_are_capped(tidy: Cluster, connect: Connect) -> None:
    charlie = await connect(tidy.fronts[0], "charlie")
    jobs = [await _run(charlie, pb.StartRequest(command="true")) for _ in range(6)]
    deadline = time.monotonic() + _DEADLINE
    while len(listed := await _owned(charlie, "charlie")) > 4:
        assert time.monotonic() < deadline, f"charlie still has {sorted(listed)}"
        await asyncio.sleep(0.1)
    assert listed == set(jobs[-4:])  # the newest four of charlie's finished jobs


async def _owned(stub: JobServiceStub, owner: str) -> set[int]:
    """Ids of `owner`'s jobs in List (charlie, a manager, sees everyone's)."""
    return {j.job_id for j in (await stub.List(pb.ListRequest())).jobs if j.owner == owner}


async def test_jobs_are_removed_once_past_retain(
    cluster_pki: Path, tmp_path: Path, connect: Connect
) -> None:
    with Cluster(cluster_pki, tmp_path, size=1) as cluster:
        f1 = cluster.start_front("f1", "--retain=2s")
        f2 = cluster.start_front("f2", "--retain=2s")
        agent = cluster.start_agent("n1")
        alice = await connect(f1, "alice")
        running = await alice.Start(pb.StartRequest(command="sleep", args=["1000"]))
        marker = f"retain-marker-{time.time_ns()}"
        job_id = await _run(alice, pb.StartRequest(command="echo", args=[marker]))
        await _gone(alice, job_id)
        agent.wait_for_log(rf"job {job_id} was removed from the cluster")
        assert _host_logs(cluster, "n1", marker.encode()) == []
        assert len(re.findall(rf"removed job {job_id}\b", f1.log + f2.log)) == 1
        # A running job is never removed, however old.
        status = (await alice.Status(pb.StatusRequest(job_id=running.job_id))).status
        assert status.state == pb.JOB_STATE_RUNNING


def _printing(size: int) -> pb.StartRequest:
    return pb.StartRequest(
        command=sys.executable, args=["-c", f"import sys; sys.stdout.write('x' * {size})"]
    )
