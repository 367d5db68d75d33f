"""The confinement interface: a cgroup per job, found again by job id, and the layout's name."""

from __future__ import annotations

import contextlib
import os
import select
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from jobservice.core.confine.cgroupfs import (
    parse_int,
    parse_keyed,
    procs,
    read_bytes,
    remove_dir,
)
from jobservice.core.model import JobLimits, Usage

__all__ = ["Confinement", "JobCgroup", "job_dir_name", "job_id_of", "job_ids_under"]

_PREFIX = "job-"


def job_dir_name(job_id: int) -> str:
    """A job's cgroup name: deterministic, so a restarted server finds what a dead one left."""
    return f"{_PREFIX}{job_id}"


def job_id_of(name: str) -> int | None:
    """The job id in a cgroup name made by `job_dir_name`, else None."""
    digits = name.removeprefix(_PREFIX)
    return int(digits) if name.startswith(_PREFIX) and digits.isdigit() else None


def job_ids_under(base: Path) -> list[int]:
    """The ids of the job groups below `base`."""
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return []
    return sorted(i for i in map(job_id_of, names) if i is not None)


class JobCgroup(ABC):
    """One job's cgroup (in each hierarchy the layout uses): enter, signal, kill, read, remove."""

    path: Path  # the group that tracks the job's processes (v2)

    @property
    @abstractmethod
    def procs_files(self) -> tuple[Path, ...]:
        """The files the job's first process writes its pid into before it runs its own code."""

    def pids(self) -> list[int]:
        """Every process in the job now."""
        return procs(self.path / "cgroup.procs")

    def signal(self, sig: int) -> None:
        """Send `sig` to every process in the job (however it detached from its group)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL everything in the job, forks racing with it included."""

    @abstractmethod
    def populated(self) -> bool:
        """Whether any process of the job is still alive."""

    @property
    @abstractmethod
    def usage_files(self) -> tuple[Path, ...]:
        """The files `usage_from` reads: cpu.stat, the peak memory, the OOM kill count."""

    def usage_from(self, contents: Sequence[bytes]) -> tuple[Usage, bool]:
        """CPU time and peak memory, and whether the kernel's OOM killer killed a process of
        the job, from the contents of `usage_files` (empty for a missing file): a `cpu.stat`,
        a file holding the peak in bytes, and a keyed file with an `oom_kill` count."""
        cpu_stat, peak, oom_kills = contents
        cpu = parse_keyed(cpu_stat).get("usage_usec", 0) / 1e6
        oom = parse_keyed(oom_kills).get("oom_kill", 0) > 0
        return Usage(cpu_seconds=cpu, peak_memory=parse_int(peak)), oom

    def usage(self) -> Usage:
        """CPU time and peak memory so far (read before `remove`)."""
        return self.read_usage()[0]

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of the job."""
        return self.read_usage()[1]

    def read_usage(self) -> tuple[Usage, bool]:
        """`usage_from` the files as they are now."""
        return self.usage_from([read_bytes(path) for path in self.usage_files])

    @property
    @abstractmethod
    def dirs(self) -> tuple[Path, ...]:
        """The group's directory in each hierarchy, in the order `remove` removes them."""

    @abstractmethod
    def release(self) -> None:
        """Close what the group holds open (see V2Job.watch); idempotent."""

    def remove(self) -> None:
        """Remove the (empty) group from every hierarchy."""
        self.release()
        for path in self.dirs:
            remove_dir(path)


class Confinement(ABC):
    """A cgroup layout jobs run in, or none. One per coordinator, chosen at start (`detect`)."""

    description: str  # for the server's log: "cgroup v2 at /sys/fs/cgroup/..."
    confined: bool = True

    @abstractmethod
    def create(self, job_id: int, limits: JobLimits) -> JobCgroup | None:
        """A fresh group for `job_id` with `limits` applied; None when jobs run unconfined."""

    @abstractmethod
    def find(self, job_id: int) -> JobCgroup | None:
        """The group a job (of this or an earlier server on the same data dir) left, if any."""

    @abstractmethod
    def job_ids(self) -> list[int]:
        """The ids of every job whose group exists under this server's root."""

    @abstractmethod
    def close(self) -> None:
        """Remove this server's (empty) root groups; a group still in use stays."""

    def kill_job(self, job_id: int) -> bool:
        """Kill what is left of a job (after a crash), wait for it to die, remove its group.

        Returns whether there was a group. Blocks briefly: SIGKILL takes effect at once but a
        process in the kernel (D state) finishes its call first; use it at start-up or in a
        thread.
        """
        group = self.find(job_id)
        if group is None:
            return False
        group.kill()
        for pid in group.pids():
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                fd = os.pidfd_open(pid)
                try:
                    _wait_readable(fd)
                finally:
                    os.close(fd)
        group.remove()
        return True

    def make_job_dir(self, job_id: int, path: Path) -> None:
        """mkdir a job's group; one a dead server left under the same id is killed first."""
        try:
            path.mkdir()
        except FileExistsError:
            self.kill_job(job_id)
            path.mkdir()


def _wait_readable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.poll(10_000)
