"""Crash recovery kills only the very process its search found, never a pid recycled since."""

from __future__ import annotations

import os
import signal
import subprocess

from jobservice.core.recovery import kill_pinned, start_ticks


def test_a_process_that_started_at_another_time_than_the_one_found_is_not_killed() -> None:
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        ticks = start_ticks(proc.pid)
        assert ticks is not None
        # As if the process found had exited and its pid gone to this one, started later.
        assert kill_pinned(proc.pid, ticks - 1) is None
        assert proc.poll() is None
        pidfd = kill_pinned(proc.pid, ticks)
        assert pidfd is not None
        os.close(pidfd)
        assert proc.wait() == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
