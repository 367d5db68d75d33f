"""Limits on real confined jobs: memory (OOM), cpu, pids, timeout, and the usage reported."""

from __future__ import annotations

import math

import pytest
from corehelp import PYTHON, collect, joined, spinner

from jobservice.core import ConfinementUnavailable, InvalidRequest, JobCoordinator, JobLimits
from jobservice.core.confine import Confinement

MIB = 1 << 20


async def test_a_job_over_its_memory_is_oom_killed_and_says_so(confined: JobCoordinator) -> None:
    job = await confined.start(
        "a", PYTHON, ["-c", "x = bytearray(200 << 20)"], limits=JobLimits(memory=64 * MIB)
    )
    info = await confined.wait(job)
    assert info.exit is not None
    assert info.exit.signal == 9
    assert info.oom_killed
    assert info.usage is not None
    assert info.usage.peak_memory is not None
    assert info.usage.peak_memory <= 64 * MIB


async def test_a_job_within_its_memory_exits_normally_and_its_peak_is_reported(
    confined: JobCoordinator,
) -> None:
    job = await confined.start(
        "a", PYTHON, ["-c", "x = bytearray(24 << 20)"], limits=JobLimits(memory=64 * MIB)
    )
    info = await confined.wait(job)
    assert info.exit is not None
    assert info.exit.code == 0
    assert not info.oom_killed
    assert info.usage is not None
    assert info.usage.peak_memory is not None
    assert 24 * MIB <= info.usage.peak_memory <= 64 * MIB


async def test_cpu_time_used_is_reported(confined: JobCoordinator) -> None:
    spin = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"
    job = await confined.start("a", PYTHON, ["-c", spin])
    info = await confined.wait(job)
    assert info.usage is not None
    assert 0.3 <= info.usage.cpu_seconds < 5


async def test_a_busy_job_gets_no_more_than_its_cpu_share(confined: JobCoordinator) -> None:
    # Two spinning threads over 1.5 s of wall time would use up to 3 CPU-seconds on two
    # cores; at 0.5 cores the kernel allows 0.5 per second of wall time, plus one period. Only
    # an upper bound is asserted: a loaded host can give less, never more.
    cmd, args = spinner(2, 1.5)
    job = await confined.start("a", cmd, args, limits=JobLimits(cpu=0.5))
    info = await confined.wait(job)
    assert info.usage is not None
    assert info.ended_at is not None
    wall = info.ended_at - info.started_at
    assert info.usage.cpu_seconds <= 0.5 * wall + 0.2


async def test_a_fork_loop_never_has_more_processes_than_its_pids_limit(
    confined: JobCoordinator,
) -> None:
    # Forks until the kernel refuses, then prints how many children it got.
    code = (
        "import os, time\n"
        "n = 0\n"
        "while n < 200:\n"
        "    try: pid = os.fork()\n"
        "    except OSError: break\n"
        "    if pid == 0: time.sleep(60); os._exit(0)\n"
        "    n += 1\n"
        "print(n)"
    )
    job = await confined.start("a", PYTHON, ["-c", code], limits=JobLimits(pids=20))
    children = int(joined(await collect(confined, job)))
    assert children < 20  # the job itself is one of the 20
    info = await confined.wait(job)
    assert info.exit is not None
    assert info.exit.code == 0


async def test_a_job_past_its_timeout_is_stopped_and_says_so(confined: JobCoordinator) -> None:
    job = await confined.start("a", "sleep", ["1000"], limits=JobLimits(timeout=0.5))
    info = await confined.wait(job)
    assert info.timed_out
    assert info.exit is not None
    assert info.exit.signal == 15


async def test_a_job_ending_before_its_timeout_is_not_timed_out(confined: JobCoordinator) -> None:
    job = await confined.start("a", "true", limits=JobLimits(timeout=60))
    info = await confined.wait(job)
    assert not info.timed_out


async def test_the_timeout_works_unconfined_too(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sleep", ["1000"], limits=JobLimits(timeout=0.2))
    info = await coord.wait(job)
    assert info.timed_out
    assert not info.confined
    assert info.usage is None


async def test_cgroup_limits_on_an_unconfined_coordinator_are_refused(
    coord: JobCoordinator,
) -> None:
    with pytest.raises(ConfinementUnavailable, match="cannot apply"):
        await coord.start("a", "true", limits=JobLimits(memory=64 * MIB))
    assert coord.list() == []


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (JobLimits(cpu=0), "cpu limit must be at least"),
        (JobLimits(cpu=math.inf), "cpu limit must be a finite"),
        (JobLimits(memory=1024), "memory limit must be at least"),
        (JobLimits(pids=0), "pids limit must be at least 1"),
        (JobLimits(pids=5_000_000), "pids limit must be at most 4194304"),
        (JobLimits(cpu=1e9), "cpu limit must be at most 65536 cores"),
        (JobLimits(timeout=0), "timeout must be positive"),
    ],
)
async def test_limits_no_job_could_run_under_are_invalid(
    coord: JobCoordinator, limits: JobLimits, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        await coord.start("a", "true", limits=limits)


async def test_an_infinite_cpu_limit_is_invalid_and_leaves_no_group(
    confined: JobCoordinator, confinement: Confinement
) -> None:
    with pytest.raises(InvalidRequest, match="finite"):
        await confined.start("a", "true", limits=JobLimits(cpu=math.inf))
    assert confinement.job_ids() == []


async def test_limits_at_the_kernels_maxima_are_applied(confined: JobCoordinator) -> None:
    # Over them is INVALID_ARGUMENT (above); at them, the kernel takes the values.
    job = await confined.start("a", "true", limits=JobLimits(cpu=65536.0, pids=4 << 20))
    info = await confined.wait(job)
    assert info.exit is not None
    assert info.exit.code == 0


def test_a_group_whose_limits_cannot_be_written_is_removed(confinement: Confinement) -> None:
    # Whatever the error (here not an OSError: no quota for an infinite share), nothing stays.
    with pytest.raises(OverflowError):
        confinement.create(4343, JobLimits(cpu=math.inf))
    assert confinement.find(4343) is None
