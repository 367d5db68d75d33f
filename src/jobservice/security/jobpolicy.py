"""The policy's per-user job settings: the Unix account jobs run as, default and maximum limits.

In a policy file, beside a user's grants::

    [users.alice]
    grants = [{ entity = "self", role = "task-manager" }]
    run_as = "jobs-alice"
    limits = { cpu = 1, memory = "512M", pids = 200, timeout = "1h" }
    max_limits = { cpu = 2, memory = "2G", pids = 1000, timeout = "1d" }

Every key is optional; what a user's table leaves out comes from `jobd serve`'s flags.
`run_as = "root"` is the only way to run anyone's jobs as root.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobservice.security.errors import PolicyError
from jobservice.units import parse_duration, parse_size

__all__ = ["JOB_KEYS", "LimitValues", "UserJobs", "parse_limits", "parse_user_jobs"]

JOB_KEYS = frozenset({"run_as", "limits", "max_limits"})
_LIMIT_KEYS = ("cpu", "memory", "pids", "timeout")


@dataclass(frozen=True)
class LimitValues:
    """Limits as the policy gives them (the library's JobLimits, without depending on it)."""

    cpu: float | None = None  # cores
    memory: int | None = None  # bytes
    pids: int | None = None
    timeout: float | None = None  # seconds


@dataclass(frozen=True)
class UserJobs:
    """One user's job settings; None and unset limits defer to the server's."""

    run_as: str | None = None
    defaults: LimitValues = LimitValues()
    maxima: LimitValues = LimitValues()


def parse_user_jobs(entry: Mapping[str, Any], source: str, where: str) -> UserJobs:
    """The job keys of one ``[users.NAME]`` table."""
    run_as = entry.get("run_as")
    if run_as is not None and (not isinstance(run_as, str) or not run_as):
        raise PolicyError(f"{source}: '{where}.run_as' must be an account name")
    return UserJobs(
        run_as=run_as,
        defaults=parse_limits(entry.get("limits", {}), source, f"{where}.limits"),
        maxima=parse_limits(entry.get("max_limits", {}), source, f"{where}.max_limits"),
    )


def parse_limits(table: Any, source: str, where: str) -> LimitValues:
    """``{ cpu = 0.5, memory = "256M", pids = 100, timeout = "30s" }``, each key optional."""
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: '{where}' must be a table of {', '.join(_LIMIT_KEYS)}")
    unknown = sorted(set(table) - set(_LIMIT_KEYS))
    if unknown:
        raise PolicyError(
            f"{source}: unknown key(s) {', '.join(map(repr, unknown))} in '{where}' "
            f"(allowed: {', '.join(_LIMIT_KEYS)})"
        )
    try:
        return LimitValues(
            cpu=_number(table.get("cpu"), float),
            memory=_text_or(table.get("memory"), parse_size),
            pids=_number(table.get("pids"), int),
            timeout=_text_or(table.get("timeout"), parse_duration),
        )
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{source}: '{where}': {exc}") from None


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{value!r} must be a positive number")
    if kind is int and not isinstance(value, int):
        raise ValueError(f"{value!r} must be a whole number")
    return kind(value)


def _text_or(value: Any, parse: Any) -> Any:
    """A size or duration: a string with a unit, or a plain positive number."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse(value)
    return parse(str(_number(value, float)))
