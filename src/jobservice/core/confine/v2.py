"""cgroup v2: a job's group for tracking and `cgroup.kill`, and pure v2 with its limits too.

On our hybrid machines the v2 hierarchy has no controllers, so `V2Job` only tracks and kills
there (hybrid.py adds v1 limits). On a pure v2 host with a delegated subtree, `V2Confinement`
enables cpu, memory and pids below its root and writes each limit into the job's own group.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from pathlib import Path

from jobservice.core.confine.base import Confinement, JobCgroup, job_dir_name, job_ids_under
from jobservice.core.confine.cgroupfs import (
    own_cgroups,
    parse_keyed,
    read_keyed,
    remove_dir,
    write,
)
from jobservice.core.model import JobLimits

__all__ = ["CONTROLLERS", "CPU_PERIOD_US", "V2Confinement", "V2Job", "write_v2_limits"]

# The CFS period a cpu limit is expressed in: the kernel's default, 100 ms.
CPU_PERIOD_US = 100_000
CONTROLLERS = ("cpu", "memory", "pids")


class V2Job(JobCgroup):
    """A job's group in the v2 hierarchy."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._events: int | None = None  # cgroup.events, held open from `watch` to `release`

    @functools.cached_property
    def procs_files(self) -> tuple[Path, ...]:
        return (self.path / "cgroup.procs",)

    def watch(self) -> None:
        """Get ready, off the event loop, for what the loop asks of a new job's group: hold
        cgroup.events open, so that `populated` (once per job, at its end) is a pread (opening
        a cgroup file waits on the lock that every cgroup mkdir and rmdir of the host holds:
        ~0.1 ms a job under a burst of starts, against ~1 us), and make its paths."""
        if self._events is None:
            self._events = os.open(self.path / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        _ = (self.procs_files, self.usage_files, self.dirs)  # cached now, in this thread

    def release(self) -> None:
        if self._events is not None:
            os.close(self._events)
            self._events = None

    def kill(self) -> None:
        try:
            write(self.path / "cgroup.kill", "1")
        except FileNotFoundError:
            if not self.path.exists():
                return
            self.freeze_and_kill()  # kernels before 5.14 have no cgroup.kill

    def freeze_and_kill(self) -> None:
        """Freeze so nothing forks while we SIGKILL each process, then thaw to let them die."""
        with contextlib.suppress(FileNotFoundError):
            write(self.path / "cgroup.freeze", "1")
        self.signal(signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            write(self.path / "cgroup.freeze", "0")

    def populated(self) -> bool:
        if self._events is None:
            events = read_keyed(self.path / "cgroup.events")
        else:
            try:
                events = parse_keyed(os.pread(self._events, 4096, 0))
            except OSError:  # removed meanwhile (ENODEV): nothing is in it
                events = {}
        return events.get("populated", 0) != 0

    @functools.cached_property
    def usage_files(self) -> tuple[Path, ...]:
        return (self.path / "cpu.stat", self.path / "memory.peak", self.path / "memory.events")

    @functools.cached_property
    def dirs(self) -> tuple[Path, ...]:
        return (self.path,)


def write_v2_limits(path: Path, limits: JobLimits) -> None:
    """The pure-v2 limit files of one group: cpu.max, memory.max + memory.swap.max, pids.max."""
    if limits.cpu is not None:
        quota = max(1000, round(limits.cpu * CPU_PERIOD_US))  # the kernel's minimum is 1 ms
        write(path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
    if limits.memory is not None:
        write(path / "memory.max", str(limits.memory))
        with contextlib.suppress(FileNotFoundError):  # absent when the kernel has no swap support
            write(path / "memory.swap.max", "0")
    if limits.pids is not None:
        write(path / "pids.max", str(limits.pids))


class V2Confinement(Confinement):
    """Pure cgroup v2: jobs under `root/name/`, with cpu, memory and pids enabled below it.

    `root` is a delegated group (systemd `Delegate=yes` gives jobd its own; `--cgroup-root`
    names another). v2 lets only leaves hold processes once controllers are enabled, so when
    `root` is the group jobd itself sits in, jobd first moves into `root/jobd`.
    """

    def __init__(self, mount: Path, root: Path, name: str) -> None:
        self.base = root / name
        self.description = f"cgroup v2 at {self.base}"
        own = mount / _own_v2_path()
        if own == root:
            leaf = root / "jobd"
            leaf.mkdir(exist_ok=True)
            write(leaf / "cgroup.procs", str(os.getpid()))
        available = set((root / "cgroup.controllers").read_text().split())
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            raise PermissionError(f"{root} lacks the {', '.join(missing)} controller(s)")
        enable = " ".join(f"+{c}" for c in CONTROLLERS)
        write(root / "cgroup.subtree_control", enable)
        self.base.mkdir(exist_ok=True)
        write(self.base / "cgroup.subtree_control", enable)

    def create(self, job_id: int, limits: JobLimits) -> V2Job:
        path = self.base / job_dir_name(job_id)
        self.make_job_dir(job_id, path)
        job = V2Job(path)
        try:
            job.watch()
            write_v2_limits(path, limits)
        except BaseException:  # whatever it was, no half-made group is left behind
            job.remove()
            raise
        return job

    def close(self) -> None:
        with contextlib.suppress(OSError):
            remove_dir(self.base)

    def find(self, job_id: int) -> V2Job | None:
        path = self.base / job_dir_name(job_id)
        return V2Job(path) if path.is_dir() else None

    def job_ids(self) -> list[int]:
        return job_ids_under(self.base)


def _own_v2_path() -> str:
    return own_cgroups()[""].lstrip("/")
