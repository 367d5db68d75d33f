"""How long finished jobs are kept: an age after their end, and a disk quota for each owner."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from jobservice.core.model import JobInfo

__all__ = ["DiskUsage", "Retention"]

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """When a finished job's record and output are removed.

    `keep_for`: seconds after a job ended (None: kept until removed by hand or by the quota).
    `owner_quota`: bytes of output logs one owner may have on disk (0: no quota). When a job's
    new output would pass it, the owner's oldest finished jobs are removed first; only when
    the running jobs alone pass it is the new output discarded (the job marked truncated).
    """

    keep_for: float | None = None
    owner_quota: int = 0

    def expired(self, info: JobInfo, now: float) -> bool:
        if self.keep_for is None or info.is_running or info.ended_at is None:
            return False
        return info.ended_at + self.keep_for <= now

    def next_expiry(self, infos: list[JobInfo]) -> float | None:
        """The earliest time one of `infos` expires, if any does."""
        if self.keep_for is None:
            return None
        ends = [i.ended_at for i in infos if not i.is_running and i.ended_at is not None]
        return min(ends) + self.keep_for if ends else None


class DiskUsage:
    """Bytes of output logs on disk, per owner, kept in step by the coordinator."""

    def __init__(self) -> None:
        self._bytes: Counter[str] = Counter()

    def __getitem__(self, owner: str) -> int:
        return self._bytes[owner]

    def add(self, owner: str, size: int) -> None:
        self._bytes[owner] += size

    def remove(self, owner: str, size: int) -> None:
        self._bytes[owner] -= size
        if self._bytes[owner] <= 0:
            del self._bytes[owner]
