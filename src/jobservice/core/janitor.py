"""Removes finished jobs, record and output: by hand, by age, and to keep owners in their quota.

A removed job disappears from the coordinator's table at once (so no caller sees it half
gone); its record is deleted and its log unlinked off the event loop, the record first (an
output log without a record is only a stray file; a record without its log would be a job
whose output is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path

from jobservice.core.errors import JobNotFound, JobStillRunning
from jobservice.core.job import FinishedJob, Job
from jobservice.core.journal import Journal
from jobservice.core.retention import DiskUsage, Retention
from jobservice.core.store import Removal

__all__ = ["Janitor"]

log = logging.getLogger("jobservice.core")

# Bounds of the pause between two sweeps for age: often enough that a job is removed close to
# its time, seldom enough to cost nothing.
_MIN_PAUSE = 1.0
_MAX_PAUSE = 3600.0


class Janitor:
    """The coordinator's removals; shares its table of jobs."""

    def __init__(
        self,
        jobs: MutableMapping[int, Job | FinishedJob],
        journal: Journal | None,
        retention: Retention,
        clock: Callable[[], float],
    ) -> None:
        self.retention = retention
        self.usage = DiskUsage()
        self._jobs = jobs
        self._journal = journal
        self._clock = clock
        self._deleting: set[asyncio.Task[None]] = set()

    def admit(self, owner: str, size: int) -> bool:
        """Whether `size` more bytes of `owner`'s output fit the quota, removing older jobs."""
        quota = self.retention.owner_quota
        if quota and self.usage[owner] + size > quota:
            self._make_room(owner, self.usage[owner] + size - quota)
            if self.usage[owner] + size > quota:
                return False
        self.usage.add(owner, size)
        return True

    async def remove(self, job_id: int) -> None:
        """Remove a finished job now; JobStillRunning for a running one."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if isinstance(job, Job):
            raise JobStillRunning(job_id)
        await self._delete(self._forget([job_id]))

    def drop(self, job_ids: list[int], why: str) -> None:
        """Remove these finished jobs now (deletion runs on in the background), saying why."""
        log.info("%s: removing jobs %s", why, job_ids)
        self._spawn_delete(self._forget(job_ids))

    def sweep(self) -> list[int]:
        """Remove every job past its time (deletion runs on in the background); their ids."""
        expired = self._expired()
        if expired:
            self._spawn_delete(self._forget(expired))
        return expired

    def sweep_at_start(self) -> None:
        """Before the coordinator serves: expired jobs and owners over quota, synchronously."""
        doomed = self._expired()
        if self.retention.owner_quota:
            owners = {job.owner for job in self._jobs.values()}
            for owner in owners:
                excess = self.usage[owner] - self.retention.owner_quota
                if excess > 0:
                    doomed += self._oldest_finished(owner, excess)
        doomed = list(dict.fromkeys(doomed))  # expired and over quota: once
        if doomed:
            paths = self._forget(doomed)
            if self._journal is not None:
                self._journal.write_now([Removal(tuple(doomed))])
            _unlink(paths)

    async def run(self) -> None:
        """Sweep for age until cancelled, waking when the next job is due."""
        while True:
            self.sweep()
            infos = [job.info() for job in self._jobs.values() if isinstance(job, FinishedJob)]
            due = self.retention.next_expiry(infos)
            cap = _MAX_PAUSE if self.retention.keep_for is None else self.retention.keep_for / 10
            pause = _MAX_PAUSE if due is None else due - self._clock()
            await asyncio.sleep(min(max(pause, _MIN_PAUSE), max(cap, _MIN_PAUSE)))

    async def close(self) -> None:
        """Wait for deletions under way."""
        if self._deleting:
            await asyncio.gather(*self._deleting, return_exceptions=True)

    def _expired(self) -> list[int]:
        now = self._clock()
        return [
            job_id
            for job_id, job in self._jobs.items()
            if isinstance(job, FinishedJob) and self.retention.expired(job.record, now)
        ]

    def _make_room(self, owner: str, excess: int) -> None:
        doomed = self._oldest_finished(owner, excess)
        if doomed:
            log.info("%s is over the output quota: removing jobs %s", owner, doomed)
            self._spawn_delete(self._forget(doomed))

    def _oldest_finished(self, owner: str, excess: int) -> list[int]:
        """Ids of `owner`'s finished jobs, oldest end first, that together free `excess` bytes."""
        finished = sorted(
            (job for job in self._jobs.values() if isinstance(job, FinishedJob)),
            key=lambda job: (job.record.ended_at or 0.0, job.record.id),
        )
        doomed: list[int] = []
        for job in finished:
            if excess <= 0:
                break
            if job.owner == owner:
                doomed.append(job.record.id)
                excess -= job.output.size
        return doomed

    def _forget(self, job_ids: list[int]) -> list[tuple[int, Path]]:
        """Take jobs out of the table and the usage; what remains to delete on disk."""
        gone = []
        for job_id in job_ids:
            job = self._jobs.pop(job_id)
            self.usage.remove(job.owner, job.output.size)
            gone.append((job_id, job.output.path))
        return gone

    def _spawn_delete(self, gone: list[tuple[int, Path]]) -> None:
        task = asyncio.ensure_future(self._delete_logged(gone))
        self._deleting.add(task)
        task.add_done_callback(self._deleting.discard)

    async def _delete(self, gone: list[tuple[int, Path]]) -> None:
        ids = tuple(job_id for job_id, _ in gone)
        if self._journal is not None:
            await self._journal.write(Removal(ids))
        await asyncio.to_thread(_unlink, gone)
        log.info("removed jobs %s", list(ids))

    async def _delete_logged(self, gone: list[tuple[int, Path]]) -> None:
        try:
            await self._delete(gone)
        except Exception as exc:  # the jobs are gone for callers; the disk is the operator's
            log.error("removing jobs %s failed: %s", [job_id for job_id, _ in gone], exc)


def _unlink(gone: list[tuple[int, Path]]) -> None:
    for _, path in gone:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
