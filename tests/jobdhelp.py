"""Helpers for tests against a real `jobd`: start and stop servers, call RPCs, read output."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from jobservice.api import JobServiceStub
from jobservice.api.server import ServerConfig
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core.confine import ConfineMode, detect, root_name

__all__ = [
    "USERS",
    "Connect",
    "Credentials",
    "Jobd",
    "JobdLauncher",
    "Output",
    "RawMessage",
    "credentials",
    "feed_stdin",
    "forget_cgroups",
    "jobd_command",
    "loopback_config",
    "pid_exists",
    "read_output",
    "status_of",
    "wait_gone",
]

# alice, bob and charlie are the built-in policy's users; mallory holds a valid certificate
# from the same CA but is in no policy.
USERS = ("alice", "bob", "charlie", "mallory")

# The built-in policy's table: user, entity, role.
_BUILT_IN = (
    ("alice", "self", "task-manager"),
    ("bob", "all", "analyst"),
    ("charlie", "all", "task-manager"),
)
_READY = re.compile(r"jobd listening on ([^\s\",]+)")
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 20.0


class RawMessage:
    """Bytes sent as a request message as they are, to speak malformed protobuf."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:  # the protobuf method grpclib calls
        return self.data


def jobd_command() -> list[str]:
    """How to run the installed `jobd`: the venv's console script, else `python -m`."""
    script = Path(sys.executable).with_name("jobd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "jobservice.cli.jobd"]


def loopback_config(pki: Path, data_dir: Path, **overrides: Any) -> ServerConfig:
    """A ServerConfig for an in-process server on a free loopback port with `pki`'s server."""
    return ServerConfig(
        host="127.0.0.1",
        port=0,
        ca=pki / "ca.pem",
        cert=pki / "server.pem",
        key=pki / "server.key",
        data_dir=data_dir,
        **overrides,
    )


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

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """The first match of `pattern` in the log, waiting for it to be written (sync tests)."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.log)):
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} not in jobd's log within {timeout} s:\n{self.log}")
            time.sleep(0.02)
        return found

    async def logged(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """`wait_for_log` for async tests: the event loop (and the test's clients) keep running."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.log)):
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} not in jobd's log within {timeout} s:\n{self.log}")
            await asyncio.sleep(0.02)
        return found

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
    data_dirs: set[Path] = field(default_factory=set)  # every one given to a jobd, to clean up

    def command(self, *extra: str, data_dir: Path | None = None) -> list[str]:
        """The `jobd serve` command line this launcher uses, with `extra` arguments."""
        data = data_dir or self.workdir / f"data{len(self.started)}"
        self.data_dirs.add(data)
        creds = credentials(self.pki, "server")
        if not any(arg.startswith("--policy") for arg in extra):
            extra = (f"--policy={self._as_root_policy()}", *extra)
        return [
            *jobd_command(),
            "serve",
            "--listen=127.0.0.1:0",
            f"--data-dir={data}",
            f"--ca={creds.ca}",
            f"--cert={creds.cert}",
            f"--key={creds.key}",
            *extra,
        ]

    def _as_root_policy(self) -> Path:
        """The built-in policy, but jobs run as root, as they did before run-as existed.

        Tests hand jobs files in their (root-only) temporary directories; run-as has tests of
        its own (tests/integration/test_jobd_confine.py), which give their own policy.
        """
        path = self.workdir / "policy-as-root.toml"
        if not path.exists():
            path.write_text(
                "".join(
                    f'[users.{user}]\ngrants = [{{ entity = "{entity}", role = "{role}" }}]\n'
                    'run_as = "root"\n'
                    for user, entity, role in _BUILT_IN
                )
            )
        return path

    def start(self, *extra: str, data_dir: Path | None = None) -> Jobd:
        """A ready server with a fresh data dir; `extra` are more `jobd serve` arguments."""
        n = len(self.started)
        data = data_dir or self.workdir / f"data{n}"
        log_path = self.workdir / f"jobd{n}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                self.command(*extra, data_dir=data), stdout=log, stderr=log, env=_env()
            )
        jobd = Jobd(process, "", data, log_path)
        self.started.append(jobd)
        jobd.target = _wait_ready(jobd)
        return jobd

    def refusal(self, *extra: str) -> subprocess.CompletedProcess[str]:
        """`jobd serve` with `extra` arguments run to its exit: for a refusal to start."""
        return subprocess.run(
            self.command(*extra), capture_output=True, text=True, timeout=30, check=False
        )

    def stop_all(self) -> None:
        for jobd in self.started:
            jobd.terminate()
        for data in self.data_dirs:
            forget_cgroups(data)


def forget_cgroups(data_dir: Path) -> None:
    """Remove the cgroups a stopped jobd left (one killed outright cannot clean up itself)."""
    if os.geteuid() != 0:
        return
    confinement, _ = detect(ConfineMode.AUTO, root_name(data_dir))
    for job_id in confinement.job_ids():
        confinement.kill_job(job_id)
    confinement.close()


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


def pid_exists(pid: int) -> bool:
    """Whether a process `pid` exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait until process `pid` is gone; False if it is still there after `timeout` s."""
    deadline = time.monotonic() + timeout
    while pid_exists(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# The `connect` fixture: `await connect(jobd_or_target, "alice")` -> a stub on a checked channel.
Connect = Callable[["Jobd | str", str], Awaitable[JobServiceStub]]


async def status_of(call: Awaitable[object]) -> tuple[Status, str]:
    """The gRPC status and message an RPC ends with: (OK, "") or the error's."""
    try:
        await call
    except GRPCError as exc:
        return exc.status, exc.message or ""
    return Status.OK, ""


@dataclass
class Output:
    """Everything one Output stream delivered."""

    chunks: list[pb.OutputChunk]
    final: pb.JobStatus | None

    def data(self, stream: int | None = None) -> bytes:
        """The bytes of every chunk, or of one stream's chunks."""
        return b"".join(c.data for c in self.chunks if stream is None or c.stream == stream)


async def feed_stdin(stub: JobServiceStub, job_id: int, *chunks: bytes) -> tuple[Status, int]:
    """One WriteStdin call sending `chunks` (none: one empty message); its status and the
    bytes it wrote."""
    messages = chunks or (b"",)
    try:
        async with stub.WriteStdin.open() as call:
            for i, data in enumerate(messages):
                chunk = pb.StdinChunk(job_id=job_id, data=data)
                await call.send_message(chunk, end=i == len(messages) - 1)
            reply = await call.recv_message()
    except GRPCError as exc:
        return exc.status, 0
    assert reply is not None
    return Status.OK, reply.bytes_written


async def list_all(stub: JobServiceStub, page_size: int = 0) -> list[list[pb.JobStatus]]:
    """Every page of List, following the tokens."""
    pages, token = [], ""
    while True:
        response = await stub.List(pb.ListRequest(page_size=page_size, page_token=token))
        pages.append(list(response.jobs))
        token = response.next_page_token
        if not token:
            return pages


async def read_output(
    stub: JobServiceStub,
    job_id: int,
    streams: pb.OutputSelection.ValueType = pb.OUTPUT_SELECTION_ALL,
    offset: int = 0,
) -> Output:
    """Follow a job's Output stream to its end."""
    chunks: list[pb.OutputChunk] = []
    final = None
    request = pb.OutputRequest(job_id=job_id, streams=streams, offset=offset)
    for response in await stub.Output(request):
        if response.HasField("chunk"):
            assert final is None, "a chunk arrived after the final status"
            chunks.append(response.chunk)
        else:
            final = response.final_status
    return Output(chunks, final)


async def following(
    stub: JobServiceStub,
    job_id: int,
    streams: pb.OutputSelection.ValueType = pb.OUTPUT_SELECTION_ALL,
    offset: int = 0,
) -> asyncio.Task[Output]:
    """A task following a job's Output to its end, returned once jobd has accepted the stream.

    jobd sends a stream's headers as soon as it accepts it: that is the readiness signal that
    the follower is live, where a sleep would only make it likely.
    """
    accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def follow() -> Output:
        chunks: list[pb.OutputChunk] = []
        final = None
        async with stub.Output.open() as stream:
            request = pb.OutputRequest(job_id=job_id, streams=streams, offset=offset)
            await stream.send_message(request, end=True)
            await stream.recv_initial_metadata()
            accepted.set_result(None)
            async for response in stream:
                if response.HasField("chunk"):
                    chunks.append(response.chunk)
                else:
                    final = response.final_status
        return Output(chunks, final)

    task = asyncio.create_task(follow())
    waiters: list[asyncio.Future[object]] = [accepted, task]  # type: ignore[list-item]
    await asyncio.wait(waiters, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what went wrong
    assert accepted.done(), "jobd did not accept the Output stream within 10 s"
    return task


async def first_line_number(stub: JobServiceStub, job_id: int) -> int:
    """The number a job printed as its first line (a pid, from `echo $$`), read live."""
    async with stub.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        seen = b""
        while b"\n" not in seen:
            message = await asyncio.wait_for(stream.recv_message(), 10)
            assert message is not None
            seen += message.chunk.data
        await stream.cancel()
    return int(seen.split(b"\n")[0])
