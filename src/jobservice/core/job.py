"""One job's live record: its process, its output log, and the one place its state changes."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from jobservice.core.confine.base import JobCgroup
from jobservice.core.model import NO_LIMITS, ExitStatus, JobInfo, JobLimits, JobState, Stream, Usage
from jobservice.core.output_log import MAX_RECORD, OutputLog
from jobservice.core.process import ProcessGroup
from jobservice.core.spec import JobSpec
from jobservice.core.stdin import StdinPipe

__all__ = ["DRAIN_GRACE", "FinishedJob", "Job"]

# After the job's process group is gone, how long a pipe may stay open (held by a process that
# escaped the group with setsid) before we stop reading it and end the job's output.
DRAIN_GRACE = 1.0
# How soon to look again when a killed cgroup still reads populated with no process listed (the
# kernel updates the two apart); bounded by DRAIN_GRACE.
_RECHECK = 0.01
# Pipe reads per wake-up: enough to keep up with a fast writer, few enough to stay fair to others.
_READS_PER_WAKEUP = 4

log = logging.getLogger("jobservice.core")

# Called with a job's final record once it is over; the job shows as ended only once the future
# it returns is done (the coordinator makes the record durable meanwhile), however it ends.
BeforeEnd = Callable[[JobInfo], "asyncio.Future[None]"]
# Reads an ended job's usage from its (empty) cgroup, then removes the cgroup, without blocking
# the event loop; OSError if it cannot be removed (the usage is then read again here).
CgroupCloser = Callable[[JobCgroup], Awaitable[tuple[Usage, bool]]]


async def close_in_thread(cgroup: JobCgroup) -> tuple[Usage, bool]:
    """The CgroupCloser that needs no spawner: in a thread of ours."""

    def close() -> tuple[Usage, bool]:
        usage = cgroup.read_usage()
        cgroup.remove()
        return usage

    return await asyncio.to_thread(close)


@dataclass(frozen=True, slots=True)
class FinishedJob:
    """What a job leaves behind once over: its final record and its (closed) output log.

    The coordinator swaps a `Job` for this when it finishes, dropping the process handle,
    futures and pipes, so ten thousand finished jobs cost little memory.
    """

    record: JobInfo
    output: OutputLog
    # A plain attribute, as on Job: looking a job's owner up costs the same whatever its state
    # (authorization must not time differently for hidden and missing jobs).
    owner: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "owner", self.record.owner)

    def info(self) -> JobInfo:
        return self.record


class Job:
    """A job from spawn to finish: leader reaped, its group gone, and both pipes drained."""

    def __init__(
        self,
        job_id: int,
        owner: str,
        spec: JobSpec,
        output: OutputLog,
        process: ProcessGroup,
        *,
        before_end: BeforeEnd | None = None,
        limits: JobLimits = NO_LIMITS,
        run_as: str = "",
        close_cgroup: CgroupCloser = close_in_thread,
    ) -> None:
        self.id = job_id
        self.owner = owner
        # Not the whole spec: the environment (up to a megabyte) is not needed after the spawn.
        self.command, self.args, self.dir = spec.command, spec.args, spec.dir
        self.output = output
        self.process = process
        self.state = JobState.RUNNING
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.exit: ExitStatus | None = None
        self.limits, self.run_as = limits, run_as
        self.usage: Usage | None = None
        self.oom_killed = False
        self.timed_out = False
        self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[None] = self._loop.create_future()  # leader reaped
        self.finished: asyncio.Future[None] = self._loop.create_future()  # and output drained
        self._pipes = {process.stdout_fd: Stream.STDOUT, process.stderr_fd: Stream.STDERR}
        # The job's stdin, when the caller asked to write to it; closed when the job ends.
        self.stdin = None if process.stdin_fd is None else StdinPipe(job_id, process.stdin_fd)
        self._survivors: set[int] = set()  # pidfds of group members dying after the leader
        self._drain_timer: asyncio.TimerHandle | None = None
        self._before_end = before_end
        self._close_cgroup = close_cgroup
        self._ending: asyncio.Future[None] | None = None
        self._gave_up = False
        for fd, stream in self._pipes.items():
            self._loop.add_reader(fd, self._on_output, fd, stream)
        self._loop.add_reader(process.pidfd, self._on_exit)

    def info(self) -> JobInfo:
        return self._snapshot(self.state)

    def _snapshot(self, state: JobState) -> JobInfo:
        finished = state is JobState.EXITED
        return JobInfo(
            id=self.id,
            owner=self.owner,
            command=self.command,
            args=self.args,
            dir=self.dir,
            state=state,
            started_at=self.started_at,
            ended_at=self.ended_at if finished else None,
            exit=self.exit if finished else None,
            output_bytes=self.output.data_bytes,
            output_truncated=self.output.truncated,
            limits=self.limits,
            confined=self.process.cgroup is not None,
            run_as=self.run_as,
            usage=self.usage if finished else None,
            oom_killed=self.oom_killed if finished else False,
            timed_out=self.timed_out,
        )

    def _on_output(self, fd: int, stream: Stream) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                data = os.read(fd, MAX_RECORD)
            except BlockingIOError:
                return
            except OSError as e:
                log.warning("job %d: reading %s failed: %s", self.id, stream.name, e)
                data = b""
            if not data:
                self._close_pipe(fd)
                return
            self.output.append(stream, data)
            if len(data) < MAX_RECORD:
                return

    def _on_exit(self) -> None:
        self._loop.remove_reader(self.process.pidfd)
        self.exit = self.process.reap()
        self.ended_at = time.time()
        self.exited.set_result(None)
        self._watch_survivors()
        if self._pipes or self._survivors or self._populated():
            self._drain_timer = self._loop.call_later(DRAIN_GRACE, self._give_up)
        self._maybe_finish()

    def _watch_survivors(self) -> None:
        for pidfd in self.process.survivors():
            self._survivors.add(pidfd)
            self._loop.add_reader(pidfd, self._on_survivor_exit, pidfd)

    def _populated(self) -> bool:
        return self.process.populated()

    def _on_survivor_exit(self, pidfd: int) -> None:
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        self._survivors.discard(pidfd)
        self._maybe_finish()

    def _give_up(self) -> None:
        """Bound the wait: a process that left the group (setsid) may hold a pipe forever."""
        log.warning(
            "job %d: %d pipe(s) still open and %d process(es) still dying %.0fs after the job "
            "ended; closing its output",
            self.id,
            len(self._pipes),
            len(self._survivors),
            DRAIN_GRACE,
        )
        self._gave_up = True
        for fd in list(self._pipes):
            self._close_pipe(fd)
        for pidfd in list(self._survivors):
            self._on_survivor_exit(pidfd)
        self._finish()

    def _close_pipe(self, fd: int) -> None:
        self._loop.remove_reader(fd)
        self.process.close_pipe(fd)
        del self._pipes[fd]
        self._maybe_finish()

    def _maybe_finish(self) -> None:
        """Once reaped, its group gone, and drained: record the end, then `_end`."""
        if self._ending is not None or not self.process.reaped:
            return
        if self._pipes or self._survivors:
            return
        if not self._gave_up and self._populated():
            self._watch_survivors()  # forked before the kill took hold: wait for these too
            if not self._survivors and self._drain_timer is not None:
                self._loop.call_later(_RECHECK, self._maybe_finish)
            return
        self._finish()

    def _finish(self) -> None:
        """Record the end (usage read before the cgroup goes), then `_end`."""
        if self._ending is not None:
            return
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        cgroup = self.process.cgroup
        if self.stdin is not None:
            self.stdin.close()
        self.output.close()
        if self._before_end is None and cgroup is None:
            self._ending = self._loop.create_future()
            self._end()
            return
        if cgroup is None and self._before_end is not None:
            # No cgroup to remove first: wait on the record's future itself, no Task.
            self._ending = self._before_end(self._snapshot(JobState.EXITED))
        else:
            self._ending = asyncio.ensure_future(self._wind_up(cgroup))
        self._ending.add_done_callback(lambda _: self._end())

    async def _wind_up(self, cgroup: JobCgroup | None) -> None:
        """Read the usage from the (empty) cgroup and remove it, off the event loop (rmdir waits
        in the kernel for up to a millisecond); then let the coordinator record the end."""
        if cgroup is not None:
            try:
                self.usage, self.oom_killed = await self._close_cgroup(cgroup)
            except OSError as e:  # a process stuck in the kernel: found again at the next start
                log.warning("job %d: cannot remove its cgroup %s: %s", self.id, cgroup.path, e)
                self.usage, self.oom_killed = cgroup.read_usage()
        if self._before_end is not None:
            await self._before_end(self._snapshot(JobState.EXITED))

    def _end(self) -> None:
        """The one state change: RUNNING -> EXITED."""
        self.state = JobState.EXITED
        self.finished.set_result(None)
        log.info("job %d ended: %s", self.id, self.exit)
