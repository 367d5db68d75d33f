"""Shared fixtures: a real development PKI, real `jobd serve` processes, connected clients."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from grpclib.client import Channel

from jobservice.api.client import JobServiceStub, open_channel
from jobservice.security.pki import init_pki

__all__ = ["USERS", "Credentials", "Jobd", "JobdLauncher", "credentials", "jobd_command"]

# alice, bob and charlie are the built-in policy's users; mallory holds a valid certificate
# from the same CA but is in no policy.
USERS = ("alice", "bob", "charlie", "mallory")

_READY = re.compile(r"jobd listening on (\S+)")
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 20.0


def jobd_command() -> list[str]:
    """How to run the installed `jobd`: the venv's console script, else `python -m`."""
    script = Path(sys.executable).with_name("jobd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "jobservice.cli.jobd"]


@dataclass(frozen=True)
class Credentials:
    """A CA file and one party's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def credentials(pki: Path, user: str) -> Credentials:
    """The CA and `user`'s certificate and key ("server" for the server's)."""
    return Credentials(pki / "ca.pem", pki / f"{user}.pem", pki / f"{user}.key")


@dataclass
class Jobd:
    """One running `jobd serve` process."""

    process: subprocess.Popen[bytes]
    target: str
    data_dir: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        """The server's stderr so far."""
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = _STOP_TIMEOUT) -> int:
        """SIGTERM and wait; the exit status, or a test failure (after SIGKILL) if it hangs."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait()
            pytest.fail(f"jobd {self.pid} did not exit within {timeout} s of SIGTERM:\n{self.log}")


@dataclass
class JobdLauncher:
    """Starts `jobd serve` processes on loopback and stops every one it started."""

    pki: Path
    workdir: Path
    started: list[Jobd] = field(default_factory=list)

    def start(self, *extra: str, data_dir: Path | None = None) -> Jobd:
        """A ready server with a fresh data dir; `extra` are more `jobd serve` arguments."""
        n = len(self.started)
        data = data_dir or self.workdir / f"data{n}"
        log_path = self.workdir / f"jobd{n}.log"
        args = [*jobd_command(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)]
        creds = credentials(self.pki, "server")
        args += ["--ca", str(creds.ca), "--cert", str(creds.cert), "--key", str(creds.key)]
        with log_path.open("wb") as log:
            process = subprocess.Popen([*args, *extra], stdout=log, stderr=log, env=_env())
        jobd = Jobd(process, "", data, log_path)
        self.started.append(jobd)
        jobd.target = _wait_ready(jobd)
        return jobd

    def stop_all(self) -> None:
        for jobd in self.started:
            jobd.terminate()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _wait_ready(jobd: Jobd) -> str:
    """The address from jobd's "listening" line; fails the test if it exits or is slow."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        found = _READY.search(jobd.log)
        if found:
            return found.group(1)
        if jobd.process.poll() is not None:
            pytest.fail(f"jobd exited with {jobd.process.returncode} at start:\n{jobd.log}")
        time.sleep(0.02)
    jobd.terminate()
    pytest.fail(f"jobd not ready within {_START_TIMEOUT} s:\n{jobd.log}")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI (CA, server, alice, bob, charlie, mallory) made by the real code."""
    out = tmp_path_factory.mktemp("pki")
    shutil.rmtree(out)  # init_pki creates the directory itself
    init_pki(out, USERS)
    return out


@pytest.fixture
def jobd_launcher(pki: Path, tmp_path: Path) -> Iterator[JobdLauncher]:
    """Start servers with custom flags: `jobd_launcher.start("--max-streams", "5")`."""
    launcher = JobdLauncher(pki, tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture
def jobd(jobd_launcher: JobdLauncher) -> Jobd:
    """A fresh `jobd serve` with the built-in policy, for this test only."""
    return jobd_launcher.start("--stop-grace", "2")


@pytest.fixture(scope="module")
def shared_jobd(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobd]:
    """One `jobd serve` for a whole test module, where tests do not disturb one another."""
    launcher = JobdLauncher(pki, tmp_path_factory.mktemp("jobd"))
    yield launcher.start("--stop-grace", "2")
    launcher.stop_all()


Connect = Callable[..., Awaitable[JobServiceStub]]


@pytest.fixture
async def connect(pki: Path) -> AsyncIterator[Connect]:
    """`await connect(jobd, "alice")`: a stub on a verified channel, closed after the test."""
    channels: list[Channel] = []

    async def _connect(server: Jobd | str, user: str) -> JobServiceStub:
        target = server if isinstance(server, str) else server.target
        creds = credentials(pki, user)
        channel = await open_channel(target, ca=creds.ca, cert=creds.cert, key=creds.key)
        channels.append(channel)
        return JobServiceStub(channel)

    yield _connect
    for channel in channels:
        channel.close()
