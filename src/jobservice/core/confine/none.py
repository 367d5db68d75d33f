"""No cgroups: jobs run as process groups only (no host support, no privilege, or --confine off)."""

from __future__ import annotations

from jobservice.core.confine.base import Confinement, JobCgroup
from jobservice.core.errors import ConfinementUnavailable
from jobservice.core.model import JobLimits

__all__ = ["Unconfined"]


class Unconfined(Confinement):
    """Jobs run in their own process group only; a process that leaves it escapes stop."""

    confined = False

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.description = f"none ({reason}): jobs run unconfined"

    def create(self, job_id: int, limits: JobLimits) -> JobCgroup | None:
        if limits.needs_cgroup:
            raise ConfinementUnavailable(
                f"this server runs jobs without cgroups ({self.reason}), so it cannot apply "
                "cpu, memory or pids limits"
            )
        return None

    def close(self) -> None:
        pass

    def find(self, job_id: int) -> JobCgroup | None:
        return None

    def job_ids(self) -> list[int]:
        return []
