"""Cluster bounds under `make soak`: how fast a dead agent's jobs become Lost, repeatedly."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from clusterhelp import Cluster
from jobdhelp import Connect

from jobservice.api.v1 import jobservice_pb2 as pb

pytestmark = pytest.mark.soak

# The contract: an agent that dies has its running jobs Lost within 10 s, in status and list.
_LOST_WITHIN = 10.0


@pytest.mark.timeout(600)
async def test_a_dead_agents_jobs_are_lost_within_ten_seconds(
    cluster_pki: Path, tmp_path: Path, connect: Connect
) -> None:
    with Cluster(cluster_pki, tmp_path, size=3) as cluster:
        front = cluster.start_front("f1")
        alice = await connect(front, "alice")
        for _ in range(3):
            agent = cluster.start_agent("n1")
            jobs = [
                (await alice.Start(pb.StartRequest(command="sleep", args=["1000"]))).job_id
                for _ in range(5)
            ]
            agent.kill()
            killed = time.monotonic()
            while True:
                listed = {j.job_id: j.state for j in (await alice.List(pb.ListRequest())).jobs}
                if all(listed[j] == pb.JOB_STATE_LOST for j in jobs):
                    break
                assert time.monotonic() - killed < _LOST_WITHIN, listed
                await asyncio.sleep(0.1)
