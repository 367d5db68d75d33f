"""Stopping jobs and reporting how they ended: process trees, TERM-ignoring jobs, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from corehelp import collect, gone, joined

from jobservice.core import JobCoordinator, JobNotFound, JobNotRunning, JobState, Stream
from jobservice.core.process import group_members


async def read_lines(coord: JobCoordinator, job: int, count: int) -> list[bytes]:
    """The job's first `count` stdout lines, read while it runs."""
    buf = b""
    async with coord.subscribe(job, Stream.STDOUT) as sub:
        async for chunk in sub:
            buf += chunk.data
            if buf.count(b"\n") >= count:
                break
    return buf.splitlines()[:count]


async def test_stop_kills_the_whole_process_tree(coord: JobCoordinator) -> None:
    job = await coord.start(
        "a", "sh", ["-c", "sleep 1000 & echo $!; sleep 1000 & echo $!; echo $$; wait"]
    )
    pids = [int(line) for line in await read_lines(coord, job, 3)]
    info = await coord.stop(job)
    assert info.state is JobState.EXITED
    assert info.exit is not None
    assert info.exit.signal == signal.SIGTERM
    assert (info.exit.shell_code, info.exit.signal_name) == (143, "SIGTERM")
    assert str(info.exit) == "143 (SIGTERM)"
    assert all(gone(pid) for pid in pids), pids


async def test_stop_kills_a_job_that_ignores_sigterm(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path, stop_grace=0.3)
    job = await coord.start(
        "a", "sh", ["-c", "trap '' TERM; sleep 1000 & echo $!; echo $$; wait; sleep 1000"]
    )
    pids = [int(line) for line in await read_lines(coord, job, 2)]
    began = time.monotonic()
    info = await coord.stop(job)
    waited = time.monotonic() - began
    assert info.exit is not None
    assert info.exit.signal == signal.SIGKILL
    assert info.exit.shell_code == 137
    assert waited >= 0.3  # the grace period was given before SIGKILL
    assert all(gone(pid) for pid in pids)


async def test_stop_returns_only_once_the_job_has_exited(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sleep", ["1000"])
    info = await coord.stop(job)
    assert info.state is JobState.EXITED
    assert coord.status(job).state is JobState.EXITED
    assert info.ended_at is not None
    assert info.ended_at >= info.started_at


async def test_stop_errors(coord: JobCoordinator) -> None:
    with pytest.raises(JobNotFound, match="job 42 not found"):
        await coord.stop(42)
    job = await coord.start("a", "true")
    await coord.wait(job)
    with pytest.raises(JobNotRunning, match=f"job {job} is not running"):
        await coord.stop(job)


async def test_concurrent_stops_both_return_the_final_status(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sleep", ["1000"])
    first, second = await asyncio.gather(coord.stop(job), coord.stop(job))
    assert first == second
    assert first.exit is not None
    assert first.exit.signal == signal.SIGTERM


async def test_status_while_running_and_after(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sleep", ["1000"])
    running = coord.status(job)
    assert running.is_running
    assert (running.exit, running.ended_at) == (None, None)
    assert running.started_at <= time.time()
    await coord.stop(job)
    assert not coord.status(job).is_running
    with pytest.raises(JobNotFound):
        coord.status(job + 1)


async def test_signal_death_is_reported_with_the_signal(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sh", ["-c", "kill -KILL $$"])
    info = await coord.wait(job)
    assert info.exit is not None
    assert (info.exit.code, info.exit.signal) == (None, 9)
    assert str(info.exit) == "137 (SIGKILL)"


async def test_background_child_does_not_outlive_its_job(coord: JobCoordinator) -> None:
    # The main process exits at once; the child it left holds the output pipe open.
    job = await coord.start("a", "sh", ["-c", "sleep 1000 & echo $!; echo done"])
    info = await asyncio.wait_for(coord.wait(job), 30)  # not the child's 1000 s
    assert info.exit is not None
    assert info.exit.code == 0
    lines = joined(await collect(coord, job)).split()
    assert lines[1] == b"done"
    assert gone(int(lines[0]))


async def test_a_process_that_escapes_the_group_cannot_hold_the_output_open(
    coord: JobCoordinator,
) -> None:
    job = await coord.start("a", "sh", ["-c", "setsid sleep 30 & echo $!"])
    try:
        info = await asyncio.wait_for(coord.wait(job), 10)
        assert info.state is JobState.EXITED
    finally:
        escaped = int(joined(await collect(coord, job)).split()[0])
        if not gone(escaped):
            os.kill(escaped, signal.SIGKILL)


async def test_close_stops_every_running_job(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path, stop_grace=1)
    jobs = [await coord.start("a", "sleep", ["1000"]) for _ in range(5)]
    done = await coord.start("a", "true")
    await coord.wait(done)
    await coord.close()
    assert all(coord.status(j).state is JobState.EXITED for j in jobs)
    assert {coord.status(j).exit.signal for j in jobs} == {signal.SIGTERM}  # type: ignore[union-attr]


async def test_list_is_oldest_first(coord: JobCoordinator) -> None:
    a = await coord.start("alice", "true")
    b = await coord.start("bob", "sleep", ["1000"])
    assert [(j.id, j.owner) for j in coord.list()] == [(a, "alice"), (b, "bob")]


async def test_list_and_its_pages_go_by_id_whatever_order_starts_ended_in(
    coord: JobCoordinator,
) -> None:
    jobs = [await coord.start("a", "true") for _ in range(4)]
    # Concurrent starts join the job table in the order their spawns end: as if the first
    # had ended last (tests/faults' burst of 1,000 starts shows it for real, through List).
    coord._jobs[jobs[0]] = coord._jobs.pop(jobs[0])
    assert [j.id for j in coord.list()] == jobs
    assert [j.id for j in coord.jobs_after(jobs[1])] == jobs[2:]
    assert [j.id for j in coord.jobs_after(-1)] == jobs


@pytest.mark.parametrize("how", ["stop", "exit"])
async def test_the_whole_group_is_dead_when_the_job_is_over(
    coord: JobCoordinator, how: str
) -> None:
    # SIGKILL lands when its target next runs: with 200 members, dozens are often still dying
    # when the leader is reaped, and the job must not count as over until they are gone.
    tail = "echo $$; wait" if how == "stop" else "echo $$"
    for _ in range(3):
        job = await coord.start(
            "a", "sh", ["-c", f"for i in $(seq 200); do sleep 1000 & done; {tail}"]
        )
        pgid = int((await read_lines(coord, job, 1))[0])
        info = await (coord.stop(job) if how == "stop" else coord.wait(job))
        assert group_members(pgid) == [], info
