"""Retention in the library: by age (an injected clock), by each owner's quota, and by hand."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from corehelp import collect, joined

from jobservice.core import (
    JobCoordinator,
    JobNotFound,
    JobStillRunning,
    Retention,
)
from jobservice.core.output_log import MAGIC
from jobservice.store import SqliteStore

HEADER = 5  # bytes before each output record in a log


class Clock:
    """Seconds since the epoch, from now on moving only when a test says so.

    Jobs' own start and end times are the real ones: a test moves this clock far past them.
    """

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir(mode=0o700, exist_ok=True)
    return data


async def _printed(coord: JobCoordinator, owner: str, size: int) -> int:
    """A finished job of `owner` that wrote `size` bytes in one go."""
    job_id = await coord.start(owner, "head", ["-c", str(size), "/dev/zero"])
    await coord.wait(job_id)
    return job_id


async def test_finished_jobs_go_once_their_time_is_up(tmp_path: Path) -> None:
    clock, data = Clock(), _data(tmp_path)
    retention = Retention(keep_for=3600)
    coord = JobCoordinator(data, store=SqliteStore(data), retention=retention, clock=clock)
    old = await _printed(coord, "alice", 10)
    running = await coord.start("alice", "sleep", ["1000"])
    tidy = asyncio.create_task(coord.keep_tidy())
    try:
        await asyncio.sleep(0)  # its first sweep: nothing is due yet
        assert coord.status(old).ended_at is not None
        clock.now += 3600 + 600
        tidy.cancel()
        tidy = asyncio.create_task(coord.keep_tidy())
        await asyncio.sleep(0)
        with pytest.raises(JobNotFound):
            coord.status(old)
        assert coord.status(running).is_running  # a running job has no age yet
    finally:
        tidy.cancel()
        await coord.close()
    assert not (data / "logs" / f"{old}.log").exists()
    # Gone for good: the record too, and its id is not given again.
    again = JobCoordinator(data, store=SqliteStore(data), retention=retention, clock=clock)
    try:
        assert again.list() == []  # `running` ended at close, long ago by this clock
        assert await again.start("alice", "true") == running + 1
    finally:
        await again.close()


async def test_age_is_applied_at_start_up(tmp_path: Path) -> None:
    clock, data = Clock(), _data(tmp_path)
    first = JobCoordinator(data, store=SqliteStore(data), clock=clock)
    job_id = await _printed(first, "alice", 10)
    await first.close()
    clock.now += 600
    second = JobCoordinator(
        data, store=SqliteStore(data), retention=Retention(keep_for=60), clock=clock
    )
    try:
        with pytest.raises(JobNotFound):
            second.status(job_id)
        assert not (data / "logs" / f"{job_id}.log").exists()
    finally:
        await second.close()


async def test_an_owner_over_quota_loses_their_oldest_finished_jobs_first(tmp_path: Path) -> None:
    quota = 3 * (len(MAGIC) + HEADER + 1000)
    coord = JobCoordinator(_data(tmp_path), retention=Retention(owner_quota=quota))
    try:
        first = await _printed(coord, "alice", 1000)
        second = await _printed(coord, "alice", 1000)
        bobs = await _printed(coord, "bob", 1000)
        third = await _printed(coord, "alice", 1000)  # exactly at the quota: nothing goes
        assert [coord.status(i).output_bytes for i in (first, second, third)] == [1000] * 3
        fourth = await _printed(coord, "alice", 1000)
        with pytest.raises(JobNotFound):
            coord.status(first)
        assert coord.status(second).output_bytes == 1000
        assert coord.status(bobs).output_bytes == 1000  # another owner's jobs are not touched
        info = coord.status(fourth)
        assert (info.output_bytes, info.output_truncated) == (1000, False)
        assert joined(await collect(coord, fourth)) == bytes(1000)
    finally:
        await coord.close()


async def test_output_is_cut_only_when_running_jobs_alone_pass_the_quota(tmp_path: Path) -> None:
    quota = 2 * (len(MAGIC) + HEADER + 1000)
    coord = JobCoordinator(_data(tmp_path), retention=Retention(owner_quota=quota))
    try:
        finished = await _printed(coord, "alice", 1000)
        big = await _printed(coord, "alice", 5 * quota)
        with pytest.raises(JobNotFound):
            coord.status(finished)  # went first
        info = coord.status(big)
        assert info.output_truncated
        assert info.output_bytes <= quota
    finally:
        await coord.close()


async def test_remove_takes_finished_jobs_only(tmp_path: Path) -> None:
    data = _data(tmp_path)
    coord = JobCoordinator(data, store=SqliteStore(data))
    try:
        done = await _printed(coord, "alice", 10)
        running = await coord.start("alice", "sleep", ["1000"])
        with pytest.raises(JobStillRunning, match="stop it first"):
            await coord.remove(running)
        await coord.remove(done)
        with pytest.raises(JobNotFound):
            coord.status(done)
        with pytest.raises(JobNotFound):
            await coord.remove(done)
        assert not (data / "logs" / f"{done}.log").exists()
        assert coord.status(running).is_running
    finally:
        await coord.close()
    assert done not in [r.info.id for r in SqliteStore(data).load().records]
