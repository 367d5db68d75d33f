"""Confinement under load (`make soak`): 1,000 jobs leave no cgroup; cpu share measured closely."""

from __future__ import annotations

import asyncio

import pytest
from corehelp import spinner

from jobservice.core import JobCoordinator, JobLimits, Limits
from jobservice.core.confine import Confinement

pytestmark = pytest.mark.soak


async def test_no_group_is_left_after_a_thousand_jobs(
    confined: JobCoordinator, confinement: Confinement
) -> None:
    confined.limits = Limits(max_running_jobs_per_owner=0, max_running_jobs=0)
    for _ in range(10):
        jobs = [
            await confined.start("a", "sh", ["-c", "sleep 0.01 & exit 0"], limits=JobLimits(pids=5))
            for _ in range(100)
        ]
        await asyncio.gather(*(confined.wait(j) for j in jobs))
    assert confinement.job_ids() == []


async def test_a_busy_job_gets_about_half_a_core(confined: JobCoordinator) -> None:
    cmd, args = spinner(2, 4)
    job = await confined.start("a", cmd, args, limits=JobLimits(cpu=0.5))
    info = await confined.wait(job)
    assert info.usage is not None
    assert info.ended_at is not None
    share = info.usage.cpu_seconds / (info.ended_at - info.started_at)
    assert 0.35 <= share <= 0.55, share  # a loaded host may give less, the quota never more
