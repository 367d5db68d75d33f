"""The coordinator over a store: records, a restart lists every job again, ids never come back."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from corehelp import collect, joined, python_job

from jobservice.core import JobCoordinator, JobState
from jobservice.core.store import JobStore, MemoryStore, Removal
from jobservice.store import SqliteStore

StoreFactory = Callable[[Path], JobStore]


def _memory() -> StoreFactory:
    store = MemoryStore()  # one object across "restarts", as a database file would be
    return lambda _: store


@pytest.fixture(params=["memory", "sqlite"])
def reopen(request: pytest.FixtureRequest) -> StoreFactory:
    """Opens the store of a data directory again, as a restarted jobd does."""
    if request.param == "memory":
        return _memory()
    return SqliteStore


async def test_a_restart_lists_every_job_with_the_same_status_and_output(
    tmp_path: Path, reopen: StoreFactory
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    first = JobCoordinator(data, store=reopen(data))
    code = "import sys; print('out', flush=True); print('err', file=sys.stderr); sys.exit(3)"
    ids = [await first.start("alice", *python_job(code), env=["SECRET=hunter2"]) for _ in range(3)]
    before = [await first.wait(i) for i in ids]
    outputs = [await collect(first, i) for i in ids]
    await first.close()

    second = JobCoordinator(data, store=reopen(data))
    try:
        assert [second.status(i) for i in ids] == before
        assert [await collect(second, i) for i in ids] == outputs
        assert joined(outputs[0]) == b"out\nerr\n"
        assert await second.start("bob", "true") == ids[-1] + 1
    finally:
        await second.close()


async def test_ids_are_never_reused_even_when_the_highest_job_and_its_log_are_gone(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    store = SqliteStore(data)
    first = JobCoordinator(data, store=store)
    job_id = await first.start("alice", "true")
    await first.wait(job_id)
    await first.close()
    os.unlink(data / "logs" / f"{job_id}.log")
    reopened = SqliteStore(data)
    reopened.write([Removal((job_id,))])
    second = JobCoordinator(data, store=reopened)
    try:
        assert await second.start("alice", "true") == job_id + 1
    finally:
        await second.close()


async def test_a_stray_log_file_does_not_stop_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    coord = JobCoordinator(data, store=SqliteStore(data))
    try:
        (data / "logs" / "0.log").write_bytes(b"planted")
        (data / "logs" / "1.log").write_bytes(b"planted")
        # The scan at construction did not see them: the start passes over both ids.
        job_id = await coord.start("alice", "true")
        assert job_id == 2
        assert (await coord.wait(job_id)).state is JobState.EXITED
    finally:
        await coord.close()
