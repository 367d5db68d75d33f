"""The job library: spawn processes, track them, record their output, serve subscribers."""

from jobservice.core.coordinator import JobCoordinator
from jobservice.core.errors import (
    CommandNotExecutable,
    CommandNotFound,
    CoordinatorClosed,
    DirectoryNotFound,
    InvalidRequest,
    JobError,
    JobNotFound,
    JobNotRunning,
    LimitExceeded,
    SpawnFailed,
)
from jobservice.core.model import Chunk, ExitStatus, JobInfo, JobState, Limits, Stream
from jobservice.core.subscription import Subscription

__all__ = [
    "Chunk",
    "CommandNotExecutable",
    "CommandNotFound",
    "CoordinatorClosed",
    "DirectoryNotFound",
    "ExitStatus",
    "InvalidRequest",
    "JobCoordinator",
    "JobError",
    "JobInfo",
    "JobNotFound",
    "JobNotRunning",
    "JobState",
    "LimitExceeded",
    "Limits",
    "SpawnFailed",
    "Stream",
    "Subscription",
]
