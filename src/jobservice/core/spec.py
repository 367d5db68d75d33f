"""Validate a start request and resolve its command: everything checked before a process exists."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobservice.core.errors import (
    CommandNotExecutable,
    CommandNotFound,
    DirectoryNotFound,
    InvalidRequest,
)
from jobservice.core.model import Limits

__all__ = ["DEFAULT_PATH", "JobSpec", "make_spec"]

# Used to find a command when the job's environment has no PATH; the job's environment itself is
# left exactly as given.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The kernel refuses exec (E2BIG) when one argument or environment string, with its NUL, is over
# MAX_ARG_STRLEN (32 pages); refused here as the caller's error rather than as a spawn failure.
MAX_STRING_BYTES = 32 * 4096 - 1


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated request: what to run, where, and with which environment."""

    command: str  # as the caller gave it; becomes argv[0]
    executable: str  # the resolved file that is executed; "" to search `path` at exec
    args: tuple[str, ...]
    dir: str
    env: dict[str, str]
    stdin: bool = False  # a pipe for the caller to write to, instead of /dev/null
    path: str = ""  # the PATH searched for `command`


def make_spec(
    command: str,
    args: Sequence[str],
    dir: str,
    env: Sequence[str],
    limits: Limits,
    *,
    env_defaults: Mapping[str, str] | None = None,
    stdin: bool = False,
    as_other: bool = False,
) -> JobSpec:
    """Check a request against the limits and the file system; raise InvalidRequest and kin.

    `env_defaults` are the caller's (not the request's, so not counted against its limits):
    variables the job gets when `env` does not set them. `as_other`: the job runs as another
    account, which alone may look at the file system for it (as root we would tell a user
    which files exist where the account may not look): the directory and the command are
    then checked by the job's first process, as the account (process.spawn_confined).
    """
    args, env = tuple(args), tuple(env)
    _check_sizes(command, args, dir, env, limits)
    directory = dir or "/"
    if not os.path.isabs(directory):
        raise InvalidRequest(f"directory {directory!r} must be an absolute path")
    environment = _parse_env(env)
    for name, value in (env_defaults or {}).items():
        environment.setdefault(name, value)
    path = environment.get("PATH", DEFAULT_PATH)
    if as_other:
        executable = os.path.join(directory, command) if "/" in command else ""
    else:
        _check_directory(directory)
        executable = resolve_command(command, path, directory)
    return JobSpec(command, executable, args, directory, environment, stdin, path)


def _text_size(what: str, value: str) -> int:
    if "\0" in value:
        raise InvalidRequest(f"{what} must not contain NUL bytes")
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRequest(f"{what} must be valid UTF-8 text") from None


def _string_size(what: str, value: str) -> int:
    size = _text_size(what, value)
    if size > MAX_STRING_BYTES:
        raise InvalidRequest(f"{what} is {size} bytes (limit {MAX_STRING_BYTES} per string)")
    return size


def _check_sizes(
    command: str, args: tuple[str, ...], dir: str, env: tuple[str, ...], limits: Limits
) -> None:
    if not command:
        raise InvalidRequest("command must not be empty")
    if len(args) > limits.max_args:
        raise InvalidRequest(f"too many arguments: {len(args)} (limit {limits.max_args})")
    if len(env) > limits.max_env:
        raise InvalidRequest(f"too many environment entries: {len(env)} (limit {limits.max_env})")
    command_bytes = _text_size("command", command)
    if command_bytes > limits.max_command_bytes:
        raise InvalidRequest(f"command is {command_bytes} bytes (limit {limits.max_command_bytes})")
    total = command_bytes + _text_size("directory", dir)
    total += sum(_string_size(f"argument {i}", a) + 1 for i, a in enumerate(args))
    total += sum(_string_size("environment entry", e) + 1 for e in env)
    if total > limits.max_request_bytes:
        raise InvalidRequest(
            f"command, arguments and environment are {total} bytes "
            f"(limit {limits.max_request_bytes})"
        )


def _parse_env(entries: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name:
            shown = entry if len(entry) <= 64 else entry[:61] + "..."
            raise InvalidRequest(f"environment entry {shown!r} is not NAME=VALUE")
        env[name] = value  # a later entry wins, as with `env A=1 A=2`
    return env


def _check_directory(dir: str) -> None:
    """DirectoryNotFound unless `dir` is a directory (jobd's own check, for its own jobs)."""
    try:
        mode = os.stat(dir).st_mode
    except OSError:
        raise directory_error(dir, errno.ENOENT) from None
    if not stat.S_ISDIR(mode):
        raise directory_error(dir, errno.ENOTDIR)


def directory_error(dir: str, err: int, strerror: str = "") -> DirectoryNotFound:
    """Why a job cannot start in `dir`, in the same words whoever found it: jobd's own check
    above, or the job's first process entering it as the job's account."""
    if err == errno.ENOENT:
        return DirectoryNotFound(f"directory not found: {dir}")
    if err == errno.ENOTDIR:
        return DirectoryNotFound(f"not a directory: {dir}")
    return DirectoryNotFound(f"cannot enter directory {dir}: {strerror}")


def not_on_path(command: str, path: str) -> CommandNotFound:
    """`command` is on no entry of `path` (searched by jobd, or by the job's account)."""
    return CommandNotFound(f"command not found: {command} (searched PATH={path})")


def resolve_command(command: str, path: str, directory: str) -> str:
    """The file to execute for `command`, found as a shell would: a path, or a name on PATH."""
    if "/" in command:
        candidate = os.path.join(directory, command)  # an absolute command ignores directory
        problem = _executable_problem(candidate)
        if problem == "missing":
            raise CommandNotFound(f"command not found: {command}")
        if problem:
            raise CommandNotExecutable(f"cannot execute {command}: {problem}")
        return candidate
    found_unusable: str | None = None
    for entry in path.split(":"):
        candidate = os.path.join(entry or directory, command)  # an empty entry means "here"
        problem = _executable_problem(candidate)
        if not problem:
            return candidate
        if problem != "missing" and found_unusable is None:
            found_unusable = f"cannot execute {candidate}: {problem}"
    if found_unusable:
        raise CommandNotExecutable(found_unusable)
    raise not_on_path(command, path)


def _executable_problem(candidate: str) -> str:
    """'' if `candidate` can be executed, else why not ('missing' if it does not exist)."""
    try:
        mode = os.stat(candidate).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return e.strerror or "not accessible"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not os.access(candidate, os.X_OK):
        return "permission denied"
    return ""
