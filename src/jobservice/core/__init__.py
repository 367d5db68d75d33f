"""The job library: spawn processes, track them, record their output, serve subscribers."""

from jobservice.core.errors import (
    CommandNotExecutable,
    CommandNotFound,
    DirectoryNotFound,
    InvalidRequest,
    JobError,
    JobNotFound,
    JobNotRunning,
    LimitExceeded,
    SpawnFailed,
)
from jobservice.core.model import Chunk, ExitStatus, JobInfo, JobState, Limits, Stream

__all__ = [
    "Chunk",
    "CommandNotExecutable",
    "CommandNotFound",
    "DirectoryNotFound",
    "ExitStatus",
    "InvalidRequest",
    "JobError",
    "JobInfo",
    "JobNotFound",
    "JobNotRunning",
    "JobState",
    "LimitExceeded",
    "Limits",
    "SpawnFailed",
    "Stream",
]
