"""How jobctl prints jobs: the contract's status lines, the JSON shape and the list table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobservice.core.model import ExitStatus

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

    from jobservice.api.v1.jobservice_pb2 import JobStatus

__all__ = [
    "JobView",
    "columns",
    "exit_text",
    "job_json",
    "list_table",
    "not_running_line",
    "removed_line",
    "state_text",
    "status_line",
    "still_running_line",
    "stopped_line",
]


_JOB_STATE_RUNNING = 1  # jobservice.v1.JobState.JOB_STATE_RUNNING
_JOB_STATE_LOST = 3  # jobservice.v1.JobState.JOB_STATE_LOST


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as jobctl shows it; built from a `JobStatus` message with `from_message`."""

    id: int
    owner: str
    command: str
    args: tuple[str, ...]
    dir: str
    running: bool
    exit_code: int | None = None  # set when the job exited on its own
    signal: int | None = None  # set when a signal ended it
    started_at: float | None = None  # seconds since the epoch
    ended_at: float | None = None
    output_bytes: int = 0
    output_truncated: bool = False
    lost: bool = False  # jobd crashed, or its cluster node went away, while it ran
    lost_reason: str | None = None
    limits: dict[str, float | int | None] | None = None  # cpu, memory, pids, timeout
    usage: dict[str, float | int | None] | None = None  # cpu_seconds, peak_memory
    oom_killed: bool = False
    timed_out: bool = False
    run_as: str = ""
    confined: bool = True
    node: str = ""  # the cluster node that runs it; empty on a single-host jobd

    @classmethod
    def from_message(cls, msg: JobStatus) -> JobView:
        def seconds(ts: Timestamp) -> float:
            return ts.seconds + ts.nanos / 1e9

        return cls(
            id=msg.job_id,
            owner=msg.owner,
            command=msg.command,
            args=tuple(msg.args),
            dir=msg.dir,
            running=msg.state == _JOB_STATE_RUNNING,
            exit_code=msg.exit_code if msg.HasField("exit_code") else None,
            signal=msg.signal if msg.HasField("signal") else None,
            started_at=seconds(msg.started_at) if msg.HasField("started_at") else None,
            ended_at=seconds(msg.ended_at) if msg.HasField("ended_at") else None,
            output_bytes=msg.output_bytes,
            output_truncated=msg.output_truncated,
            lost=msg.state == _JOB_STATE_LOST,
            lost_reason=msg.lost_reason if msg.HasField("lost_reason") else None,
            limits=_limits(msg),
            usage=_usage(msg),
            oom_killed=msg.oom_killed,
            timed_out=msg.timed_out,
            run_as=msg.run_as,
            confined=not msg.unconfined,
            node=msg.node,
        )

    @property
    def exit(self) -> ExitStatus | None:
        """How the job ended, as the library reports it; None while it runs or when lost."""
        if self.running or self.lost:
            return None
        return ExitStatus(code=self.exit_code, signal=self.signal)

    @property
    def shell_code(self) -> int | None:
        """The exit status a shell would report: the code, or 128 + the signal number."""
        return None if self.exit is None else self.exit.shell_code

    @property
    def signal_name(self) -> str | None:
        return None if self.exit is None else self.exit.signal_name


def state_text(job: JobView) -> str:
    """`running`, `exited` or `lost`: the JSON `state` and the list's STATE column."""
    if job.running:
        return "running"
    return "lost" if job.lost else "exited"


def _limits(msg: JobStatus) -> dict[str, float | int | None]:
    given = msg.limits
    return {
        "cpu": given.cpu if given.HasField("cpu") else None,
        "memory": given.memory_bytes if given.HasField("memory_bytes") else None,
        "pids": given.pids if given.HasField("pids") else None,
        "timeout": given.timeout_seconds if given.HasField("timeout_seconds") else None,
    }


def _usage(msg: JobStatus) -> dict[str, float | int | None] | None:
    if not msg.HasField("usage"):
        return None
    used = msg.usage
    peak = used.peak_memory_bytes if used.HasField("peak_memory_bytes") else None
    return {"cpu_seconds": used.cpu_seconds, "peak_memory": peak}


def exit_text(job: JobView) -> str:
    """`0`, `143 (SIGTERM)`, or with a cause `137 (SIGKILL, out of memory)`; empty if running."""
    if job.exit is None:
        return ""
    causes = [
        c for c, why in (("out of memory", job.oom_killed), ("timed out", job.timed_out)) if why
    ]
    if not causes:
        return str(job.exit)
    if job.signal_name is not None:
        causes.insert(0, job.signal_name)
    return f"{job.shell_code} ({', '.join(causes)})"


def status_line(job: JobView) -> str:
    """The contract's status line: `Job '42': Exited: 0` or `Job '77': Running`."""
    if job.running:
        return f"Job '{job.id}': Running"
    if job.lost:
        return f"Job '{job.id}': Lost"
    return f"Job '{job.id}': Exited: {exit_text(job)}"


def stopped_line(job_id: int) -> str:
    return f"Stopped Job '{job_id}'"


def removed_line(job_id: int) -> str:
    return f"Removed Job '{job_id}'"


def still_running_line(job_id: int) -> str:
    return f"Job '{job_id}' is running: stop it first."


def not_running_line(job_id: int) -> str:
    return f"Job '{job_id}' is not running."


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def job_json(job: JobView) -> dict[str, Any]:
    """The documented JSON object for a job (docs/cli.md "JSON output"); keys are stable."""
    return {
        "id": job.id,
        "owner": job.owner,
        "command": job.command,
        "args": list(job.args),
        "dir": job.dir,
        "state": state_text(job),
        "exit_code": job.shell_code,
        "signal": job.signal_name,
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "output_bytes": job.output_bytes,
        "output_truncated": job.output_truncated,
        "lost_reason": job.lost_reason,
        "limits": job.limits,
        "usage": job.usage,
        "oom_killed": job.oom_killed,
        "timed_out": job.timed_out,
        "run_as": job.run_as,
        "confined": job.confined,
        "node": job.node or None,
    }


def _started(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def list_table(jobs: list[JobView]) -> str:
    """Aligned columns ID OWNER STATE EXIT STARTED COMMAND, one job a line, header first.

    Jobs of a cluster (any job with a node) add a NODE column after OWNER.
    """
    import shlex  # noqa: PLC0415 (only `list` needs it: docs/cli.md "Cold start")

    nodes = any(job.node for job in jobs)
    header: tuple[str, ...] = ("ID", "OWNER", "STATE", "EXIT", "STARTED", "COMMAND")
    if nodes:
        header = ("ID", "OWNER", "NODE", *header[2:])
    rows = [
        (
            str(job.id),
            job.owner,
            *((job.node or "-",) if nodes else ()),
            state_text(job),
            exit_text(job) or "-",
            _started(job.started_at),
            shlex.join((job.command, *job.args)),
        )
        for job in jobs
    ]
    return columns(header, rows)


def columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, header first; the last column is not padded."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
