"""JobBackend: what the API layer needs from whatever runs jobs (this host, or a cluster).

`JobCoordinator` is the implementation that runs jobs on its own host; `jobservice.cluster`'s
front is another, which runs them on agents over NATS JetStream. The servicer holds only this
interface, so the same gRPC API, TLS and authorization serve both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from jobservice.core.confine.account import Account
from jobservice.core.model import NO_LIMITS, Chunk, JobInfo, JobLimits, Stream

__all__ = ["JobBackend", "NodeDirectory", "NodeInfo"]


class JobBackend(Protocol):
    """Start, stop, report and stream jobs; errors are the library's (`core.errors`)."""

    async def start(
        self,
        owner: str,
        command: str,
        args: Sequence[str] = (),
        dir: str = "",
        env: Sequence[str] = (),
        *,
        limits: JobLimits = NO_LIMITS,
        run_as: Account | None = None,
        stdin: bool = False,
    ) -> int: ...

    async def stop(self, job_id: int) -> JobInfo: ...

    def status(self, job_id: int) -> JobInfo: ...

    def list(self) -> list[JobInfo]: ...

    def jobs_after(self, job_id: int) -> Iterator[JobInfo]:
        """The jobs with an id above `job_id`, oldest first (List's pages)."""
        ...

    def owner(self, job_id: int) -> str | None:
        """The job's owner, or None if there is none: the same work either way (no oracle)."""
        ...

    def subscribe(
        self, job_id: int, streams: Stream = Stream.BOTH, offset: int = 0
    ) -> AbstractAsyncContextManager[AsyncIterator[Chunk]]:
        """Raises JobNotFound at once; the iterator ends when the job's output is complete."""
        ...

    async def wait(self, job_id: int) -> JobInfo: ...

    async def remove(self, job_id: int) -> None:
        """Delete a finished job's record and output. Raises JobNotFound, JobStillRunning."""
        ...

    async def keep_tidy(self) -> None:
        """Apply the retention rules until cancelled (a backend without them returns at once)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A host that runs jobs (a cluster's agent), as a front sees it."""

    name: str
    alive: bool  # its heartbeats keep arriving
    running_jobs: int
    last_seen: float  # seconds since the epoch


class NodeDirectory(Protocol):
    """What a backend of many hosts adds: its nodes, and starting a job on a chosen one."""

    def nodes(self) -> list[NodeInfo]: ...

    async def lookup(self, job_id: int) -> None:
        """Learn of `job_id` now if it is new here (another front may have started it a moment
        ago), so that `status` and the authorization that precedes every call can see it."""
        ...

    async def start_on(
        self,
        node: str,
        owner: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dir: str = "",
        env: Sequence[str] = (),
        limits: JobLimits = NO_LIMITS,
        run_as: Account | None = None,
        stdin: bool = False,
    ) -> int: ...

    async def write_stdin(self, job_id: int, data: bytes) -> None:
        """Into the job's stdin on its node; returns once its pipe has taken every byte."""
        ...

    async def close_stdin(self, job_id: int) -> None:
        """End-of-file on the job's stdin on its node."""
        ...
