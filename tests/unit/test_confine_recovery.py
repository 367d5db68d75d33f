"""At start over a store, a confining coordinator ends every job group left under its root."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from corehelp import gone

from jobservice.core import JobCoordinator, JobLimits
from jobservice.core.confine import Confinement
from jobservice.store import SqliteStore


async def test_a_job_group_with_no_record_is_killed_and_removed_at_start(
    tmp_path: Path, confinement: Confinement
) -> None:
    # A server that died between a job's spawn and its start's commit: a job, no record.
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    group = confinement.create(7, JobLimits())
    assert group is not None
    pid = os.posix_spawn("/bin/sleep", ["sleep", "1000"], {})
    try:
        for path in group.procs_files:
            path.write_text(str(pid))
        coord = JobCoordinator(data, store=SqliteStore(data), confinement=confinement)
        try:
            assert gone(pid)
            assert confinement.job_ids() == []
        finally:
            await coord.close()
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
