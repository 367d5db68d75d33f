"""Run the real `jobctl` console script as a user would, alone or many at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["JOBCTL", "JOB_KEYS", "Jobctl", "Result", "Server", "finish", "wait_for"]

JOBCTL = Path(sys.executable).with_name("jobctl")
# The documented keys of a job in --json output (docs/cli.md).
JOB_KEYS = {
    "id",
    "owner",
    "command",
    "args",
    "dir",
    "state",
    "exit_code",
    "signal",
    "started_at",
    "ended_at",
    "output_bytes",
    "output_truncated",
    "lost_reason",
    "limits",
    "usage",
    "oom_killed",
    "timed_out",
    "run_as",
    "confined",
    "node",
}
_TIMEOUT = 60.0


class Server(Protocol):
    """What these tests need of the `jobd` fixtures' server objects."""

    @property
    def target(self) -> str: ...


@dataclass(frozen=True)
class Result:
    """One finished jobctl: exit status and raw output."""

    args: tuple[str, ...]
    code: int
    out: bytes
    err: bytes

    @property
    def stdout(self) -> str:
        return self.out.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.decode(errors="replace")

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"jobctl {command} -> {self.code}\nstdout: {self.out!r}\nstderr: {self.err!r}"


@dataclass
class Jobctl:
    """jobctl bound to one server and PKI, in a clean environment (no user config leaks in)."""

    target: str
    pki: Path
    home: Path

    def env(
        self, user: str | None = "alice", extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "XDG_CONFIG"))}
        env["HOME"] = str(self.home)
        env["JOBCTL_SERVER"] = self.target
        if user is not None:
            env["JOBCTL_CERT"] = str(self.pki / f"{user}.pem")
        env.update(extra or {})
        return env

    def popen(
        self,
        *args: str,
        user: str | None = "alice",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(JOBCTL), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env(user, env),
            cwd=cwd,
        )

    def __call__(
        self,
        *args: str,
        user: str | None = "alice",
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Result:
        """Run jobctl to the end; never a traceback, whatever the outcome."""
        return finish(self.popen(*args, user=user, env=env, cwd=cwd), args)

    def many(self, calls: Sequence[tuple[str, ...]], *, user: str | None = "alice") -> list[Result]:
        """Run independent jobctl commands concurrently (each is a separate process)."""
        procs = [(self.popen(*args, user=user), args) for args in calls]
        return [finish(proc, args) for proc, args in procs]

    def start(self, *argv: str, user: str = "alice") -> int:
        """Start `argv` as `user`; the new job's id."""
        result = self("start", "--", *argv, user=user)
        assert result.code == 0, str(result)
        return int(result.stdout)


def finish(proc: subprocess.Popen[bytes], args: Sequence[str]) -> Result:
    try:
        out, err = proc.communicate(timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"jobctl {' '.join(args)} hung: {out!r} {err!r}") from None
    result = Result(tuple(args), proc.returncode, out, err)
    assert b"Traceback" not in err, str(result)
    return result


def wait_for(check: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll `check()` until truthy; for the few states only polling can observe."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)
