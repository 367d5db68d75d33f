"""`--max-jobs-per-user` on fronts holds across the cluster: every agent, every front (one
nats-server, two agents, two fronts allowing 3 running jobs per user, all real processes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterhelp import Cluster
from grpclib.const import Status
from jobdhelp import Connect, read_output, status_of

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb

_LIMIT = 3
_SLEEP = pb.StartRequest(command="sleep", args=["1000"])


@pytest.fixture(scope="module")
def limited(cluster_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(cluster_pki, tmp_path_factory.mktemp("limited"), size=1) as cluster:
        cluster.start_front("f1", f"--max-jobs-per-user={_LIMIT}")
        cluster.start_front("f2", f"--max-jobs-per-user={_LIMIT}")
        # The agents allow the default (256 per user): only the fronts' limit can refuse.
        cluster.start_agent("n1")
        cluster.start_agent("n2")
        yield cluster


async def _stop_all(stub: JobServiceStub, job_ids: list[int]) -> None:
    """Stop the jobs, and return once `stub`'s front has seen each end."""
    for job_id in job_ids:
        await stub.Stop(pb.StopRequest(job_id=job_id))
    await _seen_ended(stub, job_ids)


async def _seen_ended(stub: JobServiceStub, job_ids: list[int]) -> None:
    """Return once `stub`'s front has seen each job end: its Output stream closes with the
    final status only then."""
    for job_id in job_ids:
        output = await read_output(stub, job_id)
        assert output.final is not None
        assert output.final.state != pb.JOB_STATE_RUNNING


async def test_the_limit_counts_jobs_on_every_agent_started_through_every_front(
    limited: Cluster, connect: Connect
) -> None:
    f1, f2 = limited.fronts
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")
    jobs = [
        (await alice1.Start(pb.StartRequest(command="sleep", args=["1000"], node="n1"))).job_id,
        (await alice2.Start(pb.StartRequest(command="sleep", args=["1000"], node="n2"))).job_id,
        (await alice1.Start(_SLEEP)).job_id,
    ]
    charlie_jobs: list[int] = []
    try:
        # Both fronts know all three (a front reads the record of an id it has not seen yet).
        for stub in (alice1, alice2):
            for job_id in jobs:
                status = (await stub.Status(pb.StatusRequest(job_id=job_id))).status
                assert status.state == pb.JOB_STATE_RUNNING
        for stub in (alice1, alice2):
            for node in ("", "n1", "n2"):
                code, message = await status_of(
                    stub.Start(pb.StartRequest(command="sleep", args=["1000"], node=node))
                )
                assert code == Status.RESOURCE_EXHAUSTED, node
                assert message == f"alice already has {_LIMIT} running jobs (the limit)"
        # Another user is not held back by alice's jobs.
        charlie = await connect(f1, "charlie")
        charlie_jobs.append((await charlie.Start(_SLEEP)).job_id)

        # One of alice's ends (stopped through f2, seen ended by f1): f1 starts one again.
        await _stop_all(alice2, jobs[:1])
        await _seen_ended(alice1, jobs[:1])
        jobs = jobs[1:]
        jobs.append((await alice1.Start(_SLEEP)).job_id)
        code, _ = await status_of(alice2.Start(_SLEEP))
        assert code == Status.RESOURCE_EXHAUSTED
    finally:
        await _stop_all(alice1, jobs)
        await _stop_all(await connect(f1, "charlie"), charlie_jobs)


@pytest.mark.timeout(120)
async def test_concurrent_starts_through_one_front_never_pass_the_limit(
    limited: Cluster, connect: Connect
) -> None:
    # Starts in flight count before any record exists: of 12 at once, exactly the limit run.
    charlie = await connect(limited.fronts[0], "charlie")
    results = await asyncio.gather(*(status_of(charlie.Start(_SLEEP)) for _ in range(12)))
    codes = [code for code, _ in results]
    assert codes.count(Status.RESOURCE_EXHAUSTED) == 12 - _LIMIT, results
    listed = await charlie.List(pb.ListRequest())
    running = [
        j.job_id for j in listed.jobs if j.owner == "charlie" and j.state == pb.JOB_STATE_RUNNING
    ]
    assert len(running) == _LIMIT
    await _stop_all(charlie, running)
