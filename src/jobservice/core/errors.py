"""The library's exceptions: one hierarchy, each class a distinct answer to the caller.

JobError
├── InvalidRequest            the request itself is wrong (caller's fault, do not retry)
│   ├── CommandNotFound       no such command on the job's PATH, or no such file
│   ├── CommandNotExecutable  the command exists but cannot be executed
│   └── DirectoryNotFound     the working directory is missing or not a directory
├── JobNotFound               no job with that id
├── JobNotRunning             the job has already exited
├── JobStillRunning           the job must be stopped first (to remove it)
├── StdinClosed               the job has no stdin open to write to
├── LimitExceeded             a documented resource limit would be exceeded
├── SpawnFailed               the host could not start the process (fork/exec failure)
├── ConfinementUnavailable    cgroup limits asked of a server that cannot confine jobs
└── CoordinatorClosed         the coordinator is shutting down and takes no new work
"""

from __future__ import annotations

__all__ = [
    "CommandNotExecutable",
    "CommandNotFound",
    "ConfinementUnavailable",
    "CoordinatorClosed",
    "DirectoryNotFound",
    "InvalidRequest",
    "JobError",
    "JobNotFound",
    "JobNotRunning",
    "JobStillRunning",
    "LimitExceeded",
    "SpawnFailed",
    "StdinClosed",
]


class JobError(Exception):
    """Base of every error the library raises on purpose; str() is safe to show a caller."""


class InvalidRequest(JobError):
    """The request is malformed or over a documented size limit."""


class CommandNotFound(InvalidRequest):
    """The command is not a file, or no executable of that name is on the job's PATH."""


class CommandNotExecutable(InvalidRequest):
    """The command names a file that exists but may not be executed."""


class DirectoryNotFound(InvalidRequest):
    """The working directory does not exist or is not a directory."""


class JobNotFound(JobError):
    """No job has this id."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class JobNotRunning(JobError):
    """The job has already exited, so it cannot be stopped."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} is not running")
        self.job_id = job_id


class JobStillRunning(JobError):
    """The job is running, and what was asked needs it ended (removing it)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} is running: stop it first")
        self.job_id = job_id


class LimitExceeded(JobError):
    """Starting or following a job would exceed a configured limit."""


class SpawnFailed(JobError):
    """The operating system refused to start the process (for example fork failing)."""


class ConfinementUnavailable(JobError):
    """Jobs here run without cgroups, so cgroup limits cannot be applied (or were required)."""


class CoordinatorClosed(JobError):
    """The coordinator is shutting down and accepts no new jobs."""

    def __init__(self) -> None:
        super().__init__("the job service is shutting down")


class StdinClosed(JobError):
    """The job's stdin is not open for writing: started without it, closed, or the job ended."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            f"job {job_id} has no stdin open for writing (started without stdin, "
            "its stdin already closed, or it has ended)"
        )
        self.job_id = job_id
