"""Where the coordinator keeps job records: the store interface, its records, a memory store.

The coordinator writes a record when a job starts (before `start` returns its id), when it
ends (before `status` shows the end), and deletes records the retention rules remove. A store
only has to apply a batch of changes atomically and give everything back at the next start;
`journal.Journal` calls it from one thread and batches concurrent changes (group commit).
Environment values are never part of a record (they may hold secrets): only the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from jobservice.core.model import JobInfo

__all__ = [
    "Change",
    "Ended",
    "JobRecord",
    "JobStore",
    "Leader",
    "MemoryStore",
    "Removal",
    "StoredJobs",
]


@dataclass(frozen=True, slots=True)
class Leader:
    """How to recognise what is left of a job after a crash, without hitting a recycled pid."""

    pid: int  # the job's leader, and its process group id
    start_ticks: int  # the leader's start time (/proc/PID/stat field 22, clock ticks since boot)
    boot_id: str  # /proc/sys/kernel/random/boot_id: pids and ticks mean nothing after a reboot
    pipes: tuple[int, ...] = ()  # inode numbers of its output pipes (held by any escapee too)


@dataclass(frozen=True, slots=True)
class JobRecord:
    """Everything kept of one job: its status, and what recovery and retention need."""

    info: JobInfo
    output_path: str  # the output log, relative to the data directory
    env_names: tuple[str, ...] = ()
    log_size: int = 0  # bytes of complete records in the output log, once the job is over
    leader: Leader | None = None  # while running


@dataclass(frozen=True, slots=True)
class Ended:
    """A recorded job is over (exited, or lost): its final status and the size of its log."""

    info: JobInfo
    log_size: int


@dataclass(frozen=True, slots=True)
class Removal:
    """Delete these jobs' records (their ids stay used: `next_id` never goes down)."""

    job_ids: tuple[int, ...]


Change = JobRecord | Ended | Removal


@dataclass(frozen=True, slots=True)
class StoredJobs:
    """What a store gives back at start-up: every record, oldest first, and the next free id."""

    records: list[JobRecord]
    next_id: int  # above every id ever recorded, removed ones included


class JobStore(Protocol):
    """A durable home for job records. Methods are called from one thread at a time."""

    def load(self) -> StoredJobs:
        """Every record and the id high-water mark."""
        ...

    def write(self, changes: Sequence[Change]) -> None:
        """Apply `changes` in order, all or nothing; a record replaces one with the same id.

        `Ended` for an id without a record changes nothing.
        """
        ...

    def close(self) -> None: ...


@dataclass
class MemoryStore:
    """A store that lives as long as the process: the library without a database, and tests."""

    records: dict[int, JobRecord] = field(default_factory=dict)
    next_id: int = 0

    def load(self) -> StoredJobs:
        return StoredJobs(sorted(self.records.values(), key=_id), self.next_id)

    def write(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if isinstance(change, Removal):
                for job_id in change.job_ids:
                    self.records.pop(job_id, None)
            elif isinstance(change, Ended):
                old = self.records.get(change.info.id)
                if old is not None:
                    self.records[change.info.id] = replace(
                        old, info=change.info, log_size=change.log_size, leader=None
                    )
            else:
                self.records[change.info.id] = change
                self.next_id = max(self.next_id, change.info.id + 1)

    def close(self) -> None:
        pass


def _id(record: JobRecord) -> int:
    return record.info.id
