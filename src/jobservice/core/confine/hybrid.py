"""Hybrid hosts (ours): v2 without controllers tracks and kills, v1 cpu/memory/pids limit.

systemd's hybrid layout mounts the v2 hierarchy (`unified`) with no controllers: it still
gives each job a group whose `cgroup.procs`, `cgroup.events` and `cgroup.kill` work, and its
`cpu.stat`. The limits go to the v1 hierarchies, where the job gets a group of the same name
under jobd's own group (jobd's memory group may be nested; /proc/self/cgroup says): in memory
always, in cpu and pids only when it has such a limit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Collection
from pathlib import Path

from jobservice.core.confine.base import Confinement, job_dir_name, job_ids_under
from jobservice.core.confine.cgroupfs import remove_dir, write
from jobservice.core.confine.v2 import CPU_PERIOD_US, V2Job
from jobservice.core.model import JobLimits

__all__ = ["V1_CONTROLLERS", "HybridConfinement", "HybridJob", "write_v1_limits"]

V1_CONTROLLERS = ("cpu", "memory", "pids")


class HybridJob(V2Job):
    """A job's v2 group plus its group in each v1 controller hierarchy."""

    def __init__(self, path: Path, v1: dict[str, Path]) -> None:
        super().__init__(path)
        self.v1 = v1

    @functools.cached_property
    def procs_files(self) -> tuple[Path, ...]:
        return (self.path / "cgroup.procs", *(d / "cgroup.procs" for d in self.v1.values()))

    @functools.cached_property
    def usage_files(self) -> tuple[Path, ...]:
        memory = self.v1["memory"]
        return (
            self.path / "cpu.stat",
            memory / "memory.max_usage_in_bytes",
            memory / "memory.oom_control",
        )

    @functools.cached_property
    def dirs(self) -> tuple[Path, ...]:
        return (self.path, *self.v1.values())


def write_v1_limits(dirs: dict[str, Path], limits: JobLimits) -> None:
    """The v1 limit files: cfs quota, memory with memsw equal to it (no swap), pids.max."""
    if limits.cpu is not None:
        quota = max(1000, round(limits.cpu * CPU_PERIOD_US))
        write(dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        write(dirs["cpu"] / "cpu.cfs_quota_us", str(quota))
    if limits.memory is not None:
        # memsw is memory + swap and may never be below the memory limit: memory first.
        write(dirs["memory"] / "memory.limit_in_bytes", str(limits.memory))
        memsw = dirs["memory"] / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # absent without swap accounting, where there is no swap to use
            write(memsw, str(limits.memory))
    if limits.pids is not None:
        write(dirs["pids"] / "pids.max", str(limits.pids))


class HybridConfinement(Confinement):
    """Jobs under `name/` below jobd's own group in the v2 hierarchy and in each v1 one."""

    def __init__(self, v2_base: Path, v1_bases: dict[str, Path]) -> None:
        self.base = v2_base
        self.v1_bases = v1_bases
        self.description = (
            f"cgroup v2 at {v2_base} (hybrid: limits in v1 "
            + ", ".join(str(p) for p in v1_bases.values())
            + ")"
        )
        for path in (v2_base, *v1_bases.values()):
            path.mkdir(exist_ok=True)

    def create(self, job_id: int, limits: JobLimits) -> HybridJob:
        # memory always (peak usage, OOM kills); cpu and pids only for a limit: each group is a
        # mkdir and an rmdir per job, and the v2 group already counts the job's CPU time.
        wanted = {"memory", *(c for c in ("cpu", "pids") if getattr(limits, c) is not None)}
        job = self._job(job_dir_name(job_id), wanted)
        self.make_job_dir(job_id, job.path)
        try:
            job.watch()
            for path in job.v1.values():
                path.mkdir(exist_ok=True)
            write_v1_limits(job.v1, limits)
        except BaseException:  # whatever it was, no half-made group is left behind
            job.remove()
            raise
        return job

    def close(self) -> None:
        for path in (self.base, *self.v1_bases.values()):
            with contextlib.suppress(OSError):
                remove_dir(path)

    def find(self, job_id: int) -> HybridJob | None:
        job = self._job(job_dir_name(job_id))
        return job if job.path.is_dir() else None

    def job_ids(self) -> list[int]:
        return job_ids_under(self.base)

    def _job(self, name: str, controllers: Collection[str] = V1_CONTROLLERS) -> HybridJob:
        v1 = {c: p / name for c, p in self.v1_bases.items() if c in controllers}
        return HybridJob(self.base / name, v1)
