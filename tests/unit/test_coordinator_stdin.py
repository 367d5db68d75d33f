"""A job's stdin as a pipe the caller feeds: bytes exact, backpressure, end-of-file, refusals."""

from __future__ import annotations

import asyncio

import pytest
from corehelp import collect, joined

from jobservice.core import JobCoordinator, StdinClosed


async def test_what_is_written_is_what_the_job_reads(coord: JobCoordinator) -> None:
    job = await coord.start("alice", "cat", stdin=True)
    data = bytes(range(256)) * 8192  # 2 MiB: more than a pipe holds, so the writer waits
    await coord.write_stdin(job, data)
    coord.close_stdin(job)  # end-of-file: cat ends
    assert joined(await collect(coord, job)) == data
    assert coord.status(job).exit is not None
    assert coord.status(job).exit.code == 0  # type: ignore[union-attr]


async def test_a_job_without_stdin_reads_dev_null_and_refuses_writes(
    coord: JobCoordinator,
) -> None:
    job = await coord.start("alice", "cat")
    assert joined(await collect(coord, job)) == b""
    with pytest.raises(StdinClosed, match="has no stdin open"):
        await coord.write_stdin(job, b"x")


async def test_writes_after_the_job_closed_its_stdin_or_ended_are_refused(
    coord: JobCoordinator,
) -> None:
    job = await coord.start("alice", "sh", ["-c", "exec 0<&-; echo closed; sleep 5"], stdin=True)
    chunks = coord.subscribe(job)
    async with chunks as output:
        async for _ in output:
            break  # "closed": the job's end of the pipe is gone
    with pytest.raises(StdinClosed):
        await _write_until_refused(coord, job)
    await coord.stop(job)
    with pytest.raises(StdinClosed):
        await coord.write_stdin(job, b"x")


async def test_a_waiting_write_fails_when_the_job_ends(coord: JobCoordinator) -> None:
    job = await coord.start("alice", "sleep", ["1000"], stdin=True)  # never reads
    writing = asyncio.ensure_future(coord.write_stdin(job, b"x" * (4 << 20)))
    await coord.stop(job)
    with pytest.raises(StdinClosed):
        await writing


async def _write_until_refused(coord: JobCoordinator, job: int) -> None:
    for _ in range(100):  # the first writes may land in the pipe before the kernel notices
        await coord.write_stdin(job, b"x" * 65536)
