"""JobCoordinator: the library's public face; starts, stops, reports and streams jobs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from jobservice.core.errors import (
    CoordinatorClosed,
    InvalidRequest,
    JobNotFound,
    JobNotRunning,
    LimitExceeded,
    SpawnFailed,
)
from jobservice.core.job import FinishedJob, Job
from jobservice.core.model import JobInfo, Limits, Stream
from jobservice.core.output_log import OutputLog
from jobservice.core.process import spawn
from jobservice.core.spec import JobSpec, make_spec
from jobservice.core.subscription import Subscription

__all__ = ["JobCoordinator"]

log = logging.getLogger("jobservice.core")


class JobCoordinator:
    """Runs jobs on this host and serves their output to any number of subscribers.

    Create and use it inside one running asyncio event loop; every method is safe to call from
    concurrent tasks. Output goes to `data_dir/logs/ID.log` (see `output_log` for the format), so
    memory stays flat whatever the jobs print. `owner` is an opaque label for the caller's use.
    """

    def __init__(
        self, data_dir: Path | str, *, stop_grace: float = 5.0, limits: Limits | None = None
    ) -> None:
        self.limits = limits or Limits()
        self.stop_grace = stop_grace
        self._logs = Path(data_dir) / "logs"
        self._logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._jobs: dict[int, Job | FinishedJob] = {}
        self._running: Counter[str] = Counter()
        self._next_id = _next_free_id(self._logs)
        self._closed = False

    async def start(
        self,
        owner: str,
        command: str,
        args: Sequence[str] = (),
        dir: str = "",
        env: Sequence[str] = (),
    ) -> int:
        """Spawn `command args...` in `dir` with exactly `env` (NAME=VALUE); return its id.

        Raises InvalidRequest (or CommandNotFound, CommandNotExecutable, DirectoryNotFound),
        LimitExceeded, SpawnFailed or CoordinatorClosed. A command that starts and then fails is
        not an error here: its exit status says so.
        """
        if self._closed:
            raise CoordinatorClosed()
        spec = make_spec(command, args, dir, env, self.limits)
        self._check_capacity(owner)
        # Reserve the id and the owner's slot before the first await, so that concurrent starts
        # neither share an id nor overshoot a limit.
        job_id = self._next_id
        self._next_id += 1
        self._running[owner] += 1
        try:
            job = await self._spawn(job_id, owner, spec)
        except BaseException as e:
            self._release(owner)
            if not isinstance(e, asyncio.CancelledError) and self._next_id == job_id + 1:
                self._next_id = job_id  # nothing started since: a failed start uses up no id
            raise
        self._jobs[job_id] = job
        job.finished.add_done_callback(lambda _: self._retire(job))
        log.info("job %d started by %s: pid %d: %s", job_id, owner, job.process.pid, spec.command)
        return job_id

    async def _spawn(self, job_id: int, owner: str, spec: JobSpec) -> Job:
        """Create the job's log, then its process."""
        path = self._logs / f"{job_id}.log"
        # Creating a file can take a millisecond while the disk writes back other jobs' output;
        # in a thread it does not hold up every other call on the event loop.
        creating = asyncio.ensure_future(
            asyncio.to_thread(OutputLog, path, self.limits.max_output_bytes)
        )
        try:
            output = await asyncio.shield(creating)
        except asyncio.CancelledError:
            creating.add_done_callback(_discard_log)  # the thread finishes on its own
            raise
        except OSError as e:  # a full disk, no file descriptor left: the host's trouble
            raise SpawnFailed(f"cannot create the job's output log: {e.strerror or e}") from None
        try:
            if self._closed:
                raise CoordinatorClosed()
            process = spawn(spec)
        except BaseException:
            _discard(output)
            raise
        return Job(job_id, owner, spec, output, process)

    async def stop(self, job_id: int) -> JobInfo:
        """SIGTERM the job's process group, SIGKILL it after the grace period; return when done."""
        job = self._get(job_id)
        if not isinstance(job, Job) or job.process.reaped:
            raise JobNotRunning(job_id)
        job.process.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(job.exited), self.stop_grace)
        except TimeoutError:
            log.info("job %d ignored SIGTERM for %.1fs; killing it", job_id, self.stop_grace)
            job.process.signal(signal.SIGKILL)
        await asyncio.shield(job.finished)
        return job.info()

    def status(self, job_id: int) -> JobInfo:
        """A snapshot of the job. Raises JobNotFound."""
        return self._get(job_id).info()

    def list(self) -> list[JobInfo]:
        """Every job, oldest first."""
        return [job.info() for job in self._jobs.values()]

    def subscribe(
        self, job_id: int, streams: Stream = Stream.BOTH, offset: int = 0
    ) -> Subscription:
        """Follow the job's output from `offset` (in its combined output) to its end.

        Raises JobNotFound at once, before any iteration, so callers can answer early.
        """
        job = self._get(job_id)
        if not streams & Stream.BOTH:
            raise InvalidRequest("select stdout, stderr or both")
        if offset < 0:
            raise InvalidRequest("offset must not be negative")
        return Subscription(job.output, streams, offset)

    async def wait(self, job_id: int) -> JobInfo:
        """Wait until the job has exited and its output is drained; return its final status."""
        job = self._get(job_id)
        if isinstance(job, Job):
            await asyncio.shield(job.finished)
        return job.info()

    async def close(self) -> None:
        """Take no new jobs and stop every running one with the normal stop procedure."""
        self._closed = True
        running = [i for i, job in self._jobs.items() if isinstance(job, Job)]
        results = await asyncio.gather(*(self.stop(i) for i in running), return_exceptions=True)
        for job_id, result in zip(running, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, JobNotRunning):
                log.error("stopping job %d at shutdown failed: %r", job_id, result)

    def _retire(self, job: Job) -> None:
        """Free a finished job's slot and keep only its final record and log."""
        self._release(job.owner)
        self._jobs[job.id] = FinishedJob(job.info(), job.output)

    def _release(self, owner: str) -> None:
        """Give back one of `owner`'s running slots; owners with none leave the table."""
        self._running[owner] -= 1
        if not self._running[owner]:
            del self._running[owner]

    def _get(self, job_id: int) -> Job | FinishedJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def _check_capacity(self, owner: str) -> None:
        per_owner, total = self.limits.max_running_jobs_per_owner, self.limits.max_running_jobs
        if per_owner and self._running[owner] >= per_owner:
            raise LimitExceeded(f"{owner} already has {per_owner} running jobs (the limit)")
        if total and sum(self._running.values()) >= total:
            raise LimitExceeded(f"{total} jobs are already running (the limit)")


def _discard(output: OutputLog) -> None:
    output.close()
    output.path.unlink(missing_ok=True)


def _discard_log(creating: asyncio.Future[OutputLog]) -> None:
    if not creating.cancelled() and creating.exception() is None:
        _discard(creating.result())


def _next_free_id(logs: Path) -> int:
    """Continue after the highest id already on disk, so an id is never reused for new output."""
    # Only names this module writes (ID.log): another file there must not stop the service.
    stems = (name.removesuffix(".log") for name in os.listdir(logs) if name.endswith(".log"))
    return max((int(stem) + 1 for stem in stems if stem.isascii() and stem.isdigit()), default=0)
