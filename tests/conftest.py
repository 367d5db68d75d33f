"""Shared fixtures: a real development PKI, real `jobd serve` processes, connected clients."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from jobdhelp import USERS, Connect, Jobd, JobdLauncher, credentials

from jobservice.api import JobServiceStub, close_channel, open_channel
from jobservice.security.pki import init_pki


def pytest_configure(config: pytest.Config) -> None:
    """Children get SIGINT at its default, as from a terminal, however the suite was started.

    A runner started as a background job of a script (`make test > log &`) inherits SIGINT
    ignored, an ignored signal stays ignored across exec, and jobctl keeps an inherited
    ignore on purpose (as any command does): its Ctrl-C test would then wait out its 60 s
    guard. A signal Python handles is reset to its default in every child at exec.
    """
    del config
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development PKI (CA, server, alice, bob, charlie, mallory) made by the real code."""
    out = tmp_path_factory.mktemp("pki")
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
    await asyncio.gather(*(close_channel(channel) for channel in channels))


@pytest.fixture
def job_fifo() -> Iterator[Path]:
    """A named pipe that a job of any account can open (under root, jobs run as `nobody`).

    A job that reads it waits until the test writes to it: a job that stays running, without a
    sleep, until the test lets it end.
    """
    directory = Path(tempfile.mkdtemp(prefix="jobd-fifo-"))
    directory.chmod(0o711)  # the job's account may reach the pipe, not list the directory
    fifo = directory / "fifo"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    yield fifo
    shutil.rmtree(directory, ignore_errors=True)
