"""What travels through NATS: job records, start requests, node heartbeats and errors, as JSON.

JSON rather than protobuf: the bucket's records stay readable with the `nats` CLI, and the
cluster package needs nothing of the API layer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
    StdinClosed,
)
from jobservice.core.model import NO_LIMITS, ExitStatus, JobInfo, JobLimits, JobState, Usage

__all__ = [
    "STDIN_EOF",
    "STDIN_JOB",
    "Heartbeat",
    "StartRequest",
    "decode_error",
    "decode_info",
    "encode_error",
    "encode_info",
]


# Headers of a stdin request (its payload is the chunk's bytes as they are).
STDIN_JOB = "Jobd-Job"
STDIN_EOF = "Jobd-Eof"


def encode_info(info: JobInfo) -> bytes:
    """A job record as the bucket keeps it."""
    exit_status = info.exit
    return json.dumps(
        {
            "id": info.id,
            "owner": info.owner,
            "command": info.command,
            "args": list(info.args),
            "dir": info.dir,
            "state": info.state.value,
            "started_at": info.started_at,
            "ended_at": info.ended_at,
            "exit_code": exit_status.code if exit_status else None,
            "signal": exit_status.signal if exit_status else None,
            "output_bytes": info.output_bytes,
            "output_truncated": info.output_truncated,
            "node": info.node,
            "lost_reason": info.lost_reason,
            "limits": _limits_to_json(info.limits),
            "confined": info.confined,
            "run_as": info.run_as,
            "usage": None
            if info.usage is None
            else {"cpu_seconds": info.usage.cpu_seconds, "peak_memory": info.usage.peak_memory},
            "oom_killed": info.oom_killed,
            "timed_out": info.timed_out,
        }
    ).encode()


def decode_info(data: bytes) -> JobInfo:
    """The inverse of `encode_info`."""
    d = json.loads(data)
    exit_status = None
    if d["exit_code"] is not None or d["signal"] is not None:
        exit_status = ExitStatus(code=d["exit_code"], signal=d["signal"])
    return JobInfo(
        id=int(d["id"]),
        owner=str(d["owner"]),
        command=str(d["command"]),
        args=tuple(d["args"]),
        dir=str(d["dir"]),
        state=JobState(d["state"]),
        started_at=float(d["started_at"]),
        ended_at=None if d["ended_at"] is None else float(d["ended_at"]),
        exit=exit_status,
        output_bytes=int(d["output_bytes"]),
        output_truncated=bool(d["output_truncated"]),
        node=str(d["node"]),
        lost_reason=None if d.get("lost_reason") is None else str(d["lost_reason"]),
        limits=_limits_from_json(d.get("limits") or {}),
        confined=bool(d.get("confined", False)),
        run_as=str(d.get("run_as", "")),
        usage=None if not d.get("usage") else Usage(**d["usage"]),
        oom_killed=bool(d.get("oom_killed", False)),
        timed_out=bool(d.get("timed_out", False)),
    )


def _limits_to_json(limits: JobLimits) -> dict[str, float | int | None]:
    return {
        "cpu": limits.cpu,
        "memory": limits.memory,
        "pids": limits.pids,
        "timeout": limits.timeout,
    }


def _limits_from_json(d: dict[str, Any]) -> JobLimits:
    return JobLimits(
        cpu=d.get("cpu"), memory=d.get("memory"), pids=d.get("pids"), timeout=d.get("timeout")
    )


@dataclass(frozen=True, slots=True)
class StartRequest:
    """A front's request to start a job, as queued in the start stream."""

    owner: str
    command: str
    args: tuple[str, ...]
    dir: str
    env: tuple[str, ...]
    limits: JobLimits = NO_LIMITS  # already completed with the policy's defaults by the front
    run_as: str = ""  # the Unix account's name, looked up on the agent's host; "" = the agent's
    stdin: bool = False  # a pipe that WriteStdin feeds (through the front), not /dev/null

    def encode(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "command": self.command,
                "args": list(self.args),
                "dir": self.dir,
                "env": list(self.env),
                "limits": _limits_to_json(self.limits),
                "run_as": self.run_as,
                "stdin": self.stdin,
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> StartRequest:
        d = json.loads(data)
        return cls(
            owner=str(d["owner"]),
            command=str(d["command"]),
            args=tuple(str(a) for a in d["args"]),
            dir=str(d["dir"]),
            env=tuple(str(e) for e in d["env"]),
            limits=_limits_from_json(d.get("limits") or {}),
            run_as=str(d.get("run_as", "")),
            stdin=bool(d.get("stdin", False)),
        )


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What an agent puts in the nodes bucket every heartbeat interval."""

    name: str
    running_jobs: int

    def encode(self) -> bytes:
        return json.dumps({"name": self.name, "running_jobs": self.running_jobs}).encode()

    @classmethod
    def decode(cls, data: bytes) -> Heartbeat:
        d = json.loads(data)
        return cls(name=str(d["name"]), running_jobs=int(d["running_jobs"]))


# Errors an agent reports back to a front, rebuilt as the same library exception there.
_ERRORS: dict[str, Callable[[str, int], JobError]] = {
    "InvalidRequest": lambda m, _: InvalidRequest(m),
    "CommandNotFound": lambda m, _: CommandNotFound(m),
    "CommandNotExecutable": lambda m, _: CommandNotExecutable(m),
    "DirectoryNotFound": lambda m, _: DirectoryNotFound(m),
    "JobNotFound": lambda _, job_id: JobNotFound(job_id),
    "JobNotRunning": lambda _, job_id: JobNotRunning(job_id),
    "LimitExceeded": lambda m, _: LimitExceeded(m),
    "SpawnFailed": lambda m, _: SpawnFailed(m),
    "CoordinatorClosed": lambda _m, _j: CoordinatorClosed(),
    "StdinClosed": lambda _, job_id: StdinClosed(job_id),
}


def encode_error(exc: JobError, job_id: int = 0) -> bytes:
    """A library error as an agent's reply."""
    kind = type(exc).__name__ if type(exc).__name__ in _ERRORS else "SpawnFailed"
    return json.dumps({"error": kind, "message": str(exc), "job_id": job_id}).encode()


def decode_error(reply: dict[str, Any]) -> JobError | None:
    """The library error in an agent's reply, or None when it reports success."""
    kind = reply.get("error")
    if kind is None:
        return None
    make = _ERRORS.get(str(kind), _ERRORS["SpawnFailed"])
    return make(str(reply.get("message", "")), int(reply.get("job_id", 0)))
