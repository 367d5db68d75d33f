"""What the coordinator tells an observer (jobd's metrics, for one): jobs starting and ending."""

from __future__ import annotations

from typing import Protocol

from jobservice.core.model import JobInfo

__all__ = ["JobObserver"]


class JobObserver(Protocol):
    """Called on the coordinator's event loop; must return quickly and not raise."""

    def job_started(self, info: JobInfo) -> None:
        """`info` has just started running."""

    def job_ended(self, info: JobInfo) -> None:
        """`info` has ended: exited and its output drained, or found LOST at start-up (it ran
        when the previous server died); `info` is its final status."""
