"""How jobctl prints jobs: the contract's status lines, the JSON shape and the list table.

Jobs arrive as the library's own record, `JobInfo`, through the one converter from the wire
(`jobservice.api.status_to_info`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jobservice.core.model import JobInfo, JobState

__all__ = [
    "columns",
    "details",
    "exit_text",
    "job_json",
    "list_table",
    "removed_line",
    "state_text",
    "status_line",
    "still_running_line",
    "stopped_line",
]


def state_text(job: JobInfo) -> str:
    """`running`, `exited` or `lost`: the JSON `state` and the list's STATE column."""
    return job.state.name.lower()


def exit_text(job: JobInfo) -> str:
    """`0`, `143 (SIGTERM)`, or with a cause `137 (SIGKILL, out of memory)`; empty if running."""
    if job.exit is None:
        return ""
    causes = [
        c for c, why in (("out of memory", job.oom_killed), ("timed out", job.timed_out)) if why
    ]
    if not causes:
        return str(job.exit)
    if job.exit.signal_name is not None:
        causes.insert(0, job.exit.signal_name)
    return f"{job.exit.shell_code} ({', '.join(causes)})"


def status_line(job: JobInfo) -> str:
    """The contract's status line: `Job '42': Exited: 0` or `Job '77': Running`."""
    if job.state is JobState.RUNNING:
        return f"Job '{job.id}': Running"
    if job.state is JobState.LOST:
        return f"Job '{job.id}': Lost"
    return f"Job '{job.id}': Exited: {exit_text(job)}"


def details(job: JobInfo) -> str:
    """`status -v`'s lines under the status line: who, what, where, when, how much."""
    # Text from the job's owner: escaped (logsafe brings json, so only here: "Cold start").
    from jobservice.cli.text import shell_join  # noqa: PLC0415
    from jobservice.logsafe import escape_controls  # noqa: PLC0415

    fields = [
        ("owner", escape_controls(job.owner)),
        ("command", shell_join((job.command, *job.args))),
        ("dir", escape_controls(job.dir)),
        ("started", _started(job.started_at)),
        ("ended", _started(job.ended_at)),
        ("output", f"{job.output_bytes} bytes" + (" (truncated)" if job.output_truncated else "")),
    ]
    return "\n".join(f"  {name + ':':9}{value}" for name, value in fields)


def stopped_line(job_id: int, job: JobInfo | None = None) -> str:
    """`Stopped Job '42'`; and how, when SIGTERM was not enough (the job ignored it)."""
    if job is not None and job.exit is not None and job.exit.signal_name == "SIGKILL":
        return (
            f"Stopped Job '{job_id}': killed (SIGKILL) after it ignored SIGTERM for the grace "
            "period"
        )
    return f"Stopped Job '{job_id}'"


def removed_line(job_id: int) -> str:
    return f"Removed Job '{job_id}'"


def still_running_line(job_id: int) -> str:
    return f"Job '{job_id}' is running: stop it first."


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")


def job_json(job: JobInfo) -> dict[str, Any]:
    """The documented JSON object for a job (docs/cli.md "JSON output"); keys are stable."""
    return {
        "id": job.id,
        "owner": job.owner,
        "command": job.command,
        "args": list(job.args),
        "dir": job.dir,
        "state": state_text(job),
        "exit_code": None if job.exit is None else job.exit.shell_code,
        "signal": None if job.exit is None else job.exit.signal_name,
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
        "output_bytes": job.output_bytes,
        "output_truncated": job.output_truncated,
        "lost_reason": job.lost_reason,
        "limits": dataclasses.asdict(job.limits),  # cpu, memory, pids, timeout
        "usage": None if job.usage is None else dataclasses.asdict(job.usage),
        "oom_killed": job.oom_killed,
        "timed_out": job.timed_out,
        "run_as": job.run_as,
        "confined": job.confined,
        "node": job.node or None,
    }


def _started(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def list_table(jobs: list[JobInfo]) -> str:
    """Aligned columns ID OWNER STATE EXIT STARTED COMMAND, one job a line, header first.

    Jobs of a cluster (any job with a node) add a NODE column after OWNER.
    """
    # Only `list` needs these (logsafe brings json): docs/cli.md "Cold start".
    from jobservice.cli.text import shell_join  # noqa: PLC0415
    from jobservice.logsafe import escape_controls  # noqa: PLC0415

    nodes = any(job.node for job in jobs)
    header: tuple[str, ...] = ("ID", "OWNER", "STATE", "EXIT", "STARTED", "COMMAND")
    if nodes:
        header = ("ID", "OWNER", "NODE", *header[2:])
    rows = [
        (
            str(job.id),
            escape_controls(job.owner),
            *((escape_controls(job.node or "-"),) if nodes else ()),
            state_text(job),
            exit_text(job) or "-",
            _started(job.started_at),
            shell_join((job.command, *job.args)),
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
