"""After a crash: find what is left of the jobs that were running, and kill it, never a stranger.

A job's processes are recognised by facts recorded while it ran (`store.Leader`): the leader's
pid with its start time (so a recycled pid does not match) and boot id (so a reboot matches
nothing), and the inodes of its output pipes, which any process it started still holds unless
it closed them, also one that left the job's process group with setsid.

Where jobs run in cgroups, the cgroup is the authority; `CgroupKiller` is the hook for it (the
confinement backend kills the job's cgroup by id), tried before the process-group search.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import signal
import time
from collections.abc import Callable

from jobservice.core.process import live_processes
from jobservice.core.store import Leader

__all__ = [
    "CgroupKiller",
    "boot_id",
    "kill_leftovers",
    "kill_pinned",
    "leader_of",
    "start_ticks",
]

log = logging.getLogger("jobservice.core")

# Kills job `id`'s cgroup if there is one; True if it did (then nothing else needs doing).
CgroupKiller = Callable[[int], bool]

# How long to wait for killed processes to be gone before the server goes on.
_DEATH_WAIT = 10.0


@functools.cache
def boot_id() -> str:
    """This boot's id (read once: it changes only with a reboot, and a start reads it)."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])  # fields[0] is field 3 (state)


def leader_of(pid: int, pipe_fds: tuple[int, ...]) -> Leader:
    """The facts to recognise a just-spawned job by after a crash."""
    ticks = start_ticks(pid)
    pipes = tuple(os.fstat(fd).st_ino for fd in pipe_fds)
    return Leader(pid, ticks if ticks is not None else -1, boot_id(), pipes)


def kill_leftovers(job_id: int, leader: Leader, cgroup: CgroupKiller | None = None) -> int:
    """SIGKILL every process left of the job and wait until they are gone; how many there were."""
    if cgroup is not None and cgroup(job_id):
        return 0
    if leader.boot_id != boot_id():
        return 0  # the host rebooted since: nothing of the job can be alive
    pidfds = []
    for pid, ticks in sorted(_leftovers(leader).items()):
        pidfd = kill_pinned(pid, ticks)
        if pidfd is not None:
            pidfds.append(pidfd)
    _wait_gone(pidfds)
    if pidfds:
        log.warning(
            "job %d: killed %d process(es) left from before the restart", job_id, len(pidfds)
        )
    return len(pidfds)


def kill_pinned(pid: int, ticks: int) -> int | None:
    """SIGKILL `pid` if it is still the process that started at `ticks`; its pidfd, or None.

    Checked once the pidfd pins the process: a pid that was recycled since the search (a
    stranger, started later) shows another start time and is left alone.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        if start_ticks(pid) != ticks:
            os.close(pidfd)
            return None
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except OSError:
        os.close(pidfd)
        return None
    return pidfd


def _leftovers(leader: Leader) -> dict[int, int]:
    """The job's processes still alive, each with its start time as seen now."""
    found: dict[int, int] = {}
    # The group, only while its leader is the very process recorded (same start time): once the
    # leader is gone, its pid, and so the group id, may belong to someone else.
    if leader.start_ticks >= 0 and start_ticks(leader.pid) == leader.start_ticks:
        found[leader.pid] = leader.start_ticks
        for pid, pgid in live_processes():
            ticks = start_ticks(pid) if pgid == leader.pid else None
            if ticks is not None:
                found[pid] = ticks
    if leader.pipes:
        wanted = {f"pipe:[{inode}]" for inode in leader.pipes}
        for pid, _ in live_processes():
            if pid != os.getpid() and _holds(pid, wanted):
                ticks = start_ticks(pid)
                if ticks is not None and ticks >= leader.start_ticks:
                    found[pid] = ticks
    return found


def _holds(pid: int, targets: set[str]) -> bool:
    """Whether process `pid` has one of the `targets` (pipe:[inode]) open."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return False
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"{fd_dir}/{name}") in targets:
                return True
    return False


def _wait_gone(pidfds: list[int]) -> None:
    """Wait (bounded) until each pidfd says its process has exited; close them."""
    poller = select.poll()
    for pidfd in pidfds:
        poller.register(pidfd, select.POLLIN)
    pending, deadline = set(pidfds), time.monotonic() + _DEATH_WAIT
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
            poller.unregister(fd)
            pending.discard(fd)
    if pending:
        log.error("%d killed process(es) did not exit within %.0fs", len(pending), _DEATH_WAIT)
    for pidfd in pidfds:
        os.close(pidfd)
