"""The library's records: job states, exit statuses, job snapshots, output chunks and limits."""

from __future__ import annotations

import enum
import os
import signal
from dataclasses import dataclass

from jobservice.core.errors import LimitExceeded

__all__ = [
    "NO_LIMITS",
    "Chunk",
    "ExitStatus",
    "JobInfo",
    "JobLimits",
    "JobState",
    "Limits",
    "Stream",
    "Usage",
]


class Stream(enum.Flag):
    """An output stream, or a selection of them (`Stream.BOTH`)."""

    STDOUT = 1
    STDERR = 2
    BOTH = STDOUT | STDERR


class JobState(enum.Enum):
    """Where a job is in its life; it only moves forward, RUNNING -> EXITED or RUNNING -> LOST.

    LOST: the server stopped without a clean shutdown while the job ran (a crash, `kill -9`);
    the next start killed what was left of it, so its exit status is unknown. In a cluster:
    the job's agent went away (stopped heartbeating) while it ran.
    """

    RUNNING = "running"
    EXITED = "exited"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a process ended: exactly one of `code` (it exited) or `signal` (it was killed)."""

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        """Decode a raw `waitpid` status."""
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(code=os.waitstatus_to_exitcode(status))

    @property
    def shell_code(self) -> int:
        """The exit code a shell would report: the code, or 128 + the signal number."""
        if self.signal is not None:
            return 128 + self.signal
        return self.code if self.code is not None else 0

    @property
    def signal_name(self) -> str | None:
        """`SIGKILL` for signal 9, or None when the process exited on its own."""
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"

    def __str__(self) -> str:
        if self.signal is not None:
            return f"{self.shell_code} ({self.signal_name})"
        return str(self.shell_code)


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What one job may use; None leaves a resource unbounded (beyond the host's own limits)."""

    cpu: float | None = None  # cores, fractional: 0.5 is half of one core's time
    memory: int | None = None  # bytes of memory, with no swap
    pids: int | None = None  # processes and threads at once
    timeout: float | None = None  # seconds of wall time, then the normal stop procedure

    @property
    def needs_cgroup(self) -> bool:
        """Whether a cgroup must enforce these (the timeout alone needs none)."""
        return self.cpu is not None or self.memory is not None or self.pids is not None


NO_LIMITS = JobLimits()


@dataclass(frozen=True, slots=True)
class Usage:
    """What a confined job used, read from its cgroup when it ended."""

    cpu_seconds: float
    peak_memory: int | None = None  # bytes; None where the kernel does not record a peak


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of one job. The environment is deliberately absent: it may hold secrets."""

    id: int
    owner: str
    command: str
    args: tuple[str, ...]
    dir: str
    state: JobState
    started_at: float  # seconds since the epoch
    ended_at: float | None = None
    exit: ExitStatus | None = None
    output_bytes: int = 0
    output_truncated: bool = False
    lost_reason: str | None = None  # set when state is LOST: what happened
    limits: JobLimits = NO_LIMITS
    confined: bool = False  # ran in its own cgroup (else: a process group only)
    run_as: str = ""  # the Unix account it ran as; "" for the server's own
    usage: Usage | None = None  # set once a confined job has ended
    oom_killed: bool = False  # the kernel's OOM killer killed a process of the job
    timed_out: bool = False  # its timeout stopped it
    # The cluster node (agent) that runs it; empty for a job of this host's own jobd.
    node: str = ""

    @property
    def is_running(self) -> bool:
        return self.state is JobState.RUNNING


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a job's output: which stream, where it starts, and its bytes.

    `offset` counts bytes of the job's combined output (stdout and stderr together, in the order
    the job wrote them), so one number resumes a subscription whatever streams it selects.
    """

    stream: Stream
    offset: int
    data: bytes

    @property
    def end(self) -> int:
        """The offset just past this chunk: where a resumed subscription should start."""
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class Limits:
    """Documented resource limits; a request over one fails with a clear error, never a crash."""

    max_command_bytes: int = 4096
    max_args: int = 4096
    max_env: int = 4096
    # Total bytes of command + args + env + dir, well under the kernel's ARG_MAX (2 MiB).
    max_request_bytes: int = 1 << 20
    # Running jobs one owner may have at once; 0 means no limit.
    max_running_jobs_per_owner: int = 256
    # Running jobs in total; 0 means no limit.
    max_running_jobs: int = 1024
    # Output bytes recorded per job; beyond it output is drained and discarded, the start kept.
    # 0 means no limit.
    max_output_bytes: int = 8 << 30
    # Bytes of arguments a finished job's record keeps in memory; beyond, the list is cut and
    # ends with a note of what was not kept. The command, dir and exit status are kept whole.
    max_kept_args_bytes: int = 4096
    # Finished jobs kept per owner; past it the oldest is removed, record and log, as retention
    # removes jobs. 0 means no limit.
    max_finished_jobs_per_owner: int = 10_000

    def check_running(self, owner: str, owned: int, total: int | None = None) -> None:
        """LimitExceeded if `owner`, who has `owned` running jobs (of `total`, when the caller
        counts them all), may not start one more."""
        per_owner = self.max_running_jobs_per_owner
        if per_owner and owned >= per_owner:
            raise LimitExceeded(f"{owner} already has {per_owner} running jobs (the limit)")
        if total is not None and self.max_running_jobs and total >= self.max_running_jobs:
            raise LimitExceeded(f"{self.max_running_jobs} jobs are already running (the limit)")
