"""At start, with a store or without, a confining coordinator ends every job group left under
its root that no running record names."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from corehelp import gone

from jobservice.core import JobCoordinator, JobLimits
from jobservice.core.confine import Confinement
from jobservice.store import SqliteStore


@pytest.mark.parametrize("with_store", [True, False], ids=["store", "no-store"])
async def test_a_job_group_with_no_record_is_killed_and_removed_at_start(
    tmp_path: Path, confinement: Confinement, with_store: bool
) -> None:
    # A server that died between a job's spawn and its start's commit: a job, no record. Without
    # a store (`jobd serve --no-store`) no job survives its server: every group is a leftover.
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    group = confinement.create(7, JobLimits())
    assert group is not None
    pid = os.posix_spawn("/bin/sleep", ["sleep", "1000"], {})
    try:
        for path in group.procs_files:
            path.write_text(str(pid))
        store = SqliteStore(data) if with_store else None
        coord = JobCoordinator(data, store=store, confinement=confinement)
        try:
            assert gone(pid)
            assert confinement.job_ids() == []
        finally:
            await coord.close()
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
