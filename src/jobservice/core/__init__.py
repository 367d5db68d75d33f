"""The job library: spawn processes, track them, record their output, serve subscribers.

Names load on first use (PEP 562), so a client that needs only the records and errors (jobctl
prints `JobInfo`) does not import the coordinator and its ten modules at start-up. Measured
(`python -X importtime`, on top of what `jobctl status` imports anyway): 6-11 ms, about a tenth
of a cold `jobctl status`; the machinery pays for itself here, and only here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobservice.core.coordinator import JobCoordinator
    from jobservice.core.errors import (
        CommandNotExecutable,
        CommandNotFound,
        ConfinementUnavailable,
        CoordinatorClosed,
        DirectoryNotFound,
        InvalidRequest,
        JobError,
        JobNotFound,
        JobNotRunning,
        JobStillRunning,
        LimitExceeded,
        SpawnFailed,
        StdinClosed,
    )
    from jobservice.core.model import (
        Chunk,
        ExitStatus,
        JobInfo,
        JobLimits,
        JobState,
        Limits,
        Stream,
        Usage,
    )
    from jobservice.core.observer import JobObserver
    from jobservice.core.retention import Retention
    from jobservice.core.subscription import Subscription

__all__ = [
    "Chunk",
    "CommandNotExecutable",
    "CommandNotFound",
    "ConfinementUnavailable",
    "CoordinatorClosed",
    "DirectoryNotFound",
    "ExitStatus",
    "InvalidRequest",
    "JobCoordinator",
    "JobError",
    "JobInfo",
    "JobLimits",
    "JobNotFound",
    "JobNotRunning",
    "JobObserver",
    "JobState",
    "JobStillRunning",
    "LimitExceeded",
    "Limits",
    "Retention",
    "SpawnFailed",
    "StdinClosed",
    "Stream",
    "Subscription",
    "Usage",
]

# Which submodule defines each public name (tests/unit/test_core_package.py keeps it whole).
_HOMES = {
    "JobCoordinator": "coordinator",
    "Subscription": "subscription",
    "JobObserver": "observer",
    "Retention": "retention",
    **dict.fromkeys(
        ["Chunk", "ExitStatus", "JobInfo", "JobLimits", "JobState", "Limits", "Stream", "Usage"],
        "model",
    ),
    **dict.fromkeys(
        [
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
        ],
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
