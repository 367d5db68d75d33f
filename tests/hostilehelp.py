"""Tools for attacking a real jobd: a hand-driven HTTP/2 client, and measurements of the process.

`RawH2` speaks HTTP/2 over the policy's TLS with nothing of grpclib's good manners: it opens
streams and never sends, never acknowledges data, resets streams, and stops reading its socket.
The measurements read /proc, so they see what the kernel sees of jobd, not what jobd says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import unquote

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, Frame
from jobdhelp import Credentials, Jobd, JobdLauncher

from jobservice.security import tls

__all__ = [
    "RawH2",
    "StreamState",
    "assert_log_lines_are_records",
    "fd_count",
    "grpc_frame",
    "launch",
    "read_until_eof",
    "rss_kib",
    "session_processes",
    "tls_connect",
    "wait_until",
]

SERVICE = "/jobservice.v1.JobService"
_READ_SIZE = 1 << 16
_READY = re.compile(r"jobd listening on (\S+)")
# Every line jobd writes starts a record (a timestamp), is its listening line, or continues a
# traceback (indented): anything else was put there by a client.
_LOG_LINE = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: |jobd listening on |    )"
)


def assert_log_lines_are_records(log: str) -> None:
    """Fail on any line of jobd's log that a record of its own did not start."""
    for line in log.splitlines():
        assert _LOG_LINE.match(line), f"a log line jobd did not start: {line!r}"


def launch(
    launcher: JobdLauncher, *extra: str, wrapper: tuple[str, ...] = (), log_via_pipe: bool = False
) -> Jobd:
    """Like `launcher.start`, with the command run under `wrapper` (e.g. prlimit ... --).

    `log_via_pipe` sends jobd's stderr through a pipe (copied to the log file by a thread), so
    a file size limit on jobd does not stop it from logging. The process is registered with the
    launcher, which stops it after the test.
    """
    n = len(launcher.started)
    data = launcher.workdir / f"data{n}"
    log_path = launcher.workdir / f"jobd{n}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [*wrapper, *launcher.command(*extra, data_dir=data)]
    with log_path.open("wb") as log:
        if log_via_pipe:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
            )
            assert process.stdout is not None
            threading.Thread(target=_copy, args=(process.stdout, log_path), daemon=True).start()
        else:
            process = subprocess.Popen(command, stdout=log, stderr=log, env=env)
    jobd = Jobd(process, "", data, log_path)
    launcher.started.append(jobd)
    deadline = time.monotonic() + 20
    while not (ready := _READY.search(jobd.log)):
        assert process.poll() is None, f"jobd exited at start:\n{jobd.log}"
        assert time.monotonic() < deadline, f"jobd not ready in 20 s:\n{jobd.log}"
        time.sleep(0.02)
    jobd.target = ready.group(1)
    return jobd


def _copy(pipe: IO[bytes], path: Path) -> None:
    with pipe, path.open("ab") as log:
        while chunk := os.read(pipe.fileno(), 1 << 16):
            log.write(chunk)
            log.flush()


async def tls_connect(
    target: str, creds: Credentials
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection under the policy, with not one HTTP/2 byte sent."""
    host, port = target.rsplit(":", 1)
    context = tls.client_context(ca=creds.ca, cert=creds.cert, key=creds.key)
    return await asyncio.wait_for(
        asyncio.open_connection(host, int(port), ssl=context, server_hostname="localhost"), 10
    )


async def read_until_eof(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Read and discard until the server closes; whether it did within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(_READ_SIZE):
                pass
    except TimeoutError:
        return False
    except (ConnectionError, OSError):
        pass
    return True


def grpc_frame(payload: bytes, *, declared: int | None = None) -> bytes:
    """A gRPC length-prefixed message; `declared` lies about its length."""
    length = len(payload) if declared is None else declared
    return struct.pack(">?I", False, length) + payload


@dataclass
class StreamState:
    """What the server sent on one stream."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None
    ended: bool = False

    @property
    def grpc_status(self) -> int | None:
        """The call's status code, from the trailers (or a trailers-only answer's headers)."""
        value = self._metadata().get("grpc-status")
        return int(value) if value is not None else None

    @property
    def grpc_message(self) -> str:
        return unquote(self._metadata().get("grpc-message", ""))

    def _metadata(self) -> dict[str, str]:
        merged = {k.decode(): v.decode() for k, v in self.headers}
        merged.update(self.trailers)
        return merged


class RawH2:
    """One HTTP/2 connection to jobd over strict mutual TLS, driven by hand."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ack_data: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.ack_data = ack_data
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, StreamState] = {}
        self.goaway: ConnectionTerminated | None = None
        self.closed = False
        self.ping_acks: set[bytes] = set()
        self._out = bytearray()  # frames queued by hand, before h2's own

    @classmethod
    async def open(
        cls,
        target: str,
        creds: Credentials,
        *,
        window: int | None = None,
        ack_data: bool = True,
    ) -> RawH2:
        """Connect; `window` sets our receive windows (stream and connection) to that size."""
        reader, writer = await tls_connect(target, creds)
        raw = cls(reader, writer, ack_data)
        raw.h2.initiate_connection()
        if window is not None:
            raw.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: window})
            raw.h2.increment_flow_control_window(window - 65535)
        await raw.flush()
        return raw

    def request(self, rpc: str) -> int:
        """Open a stream calling `rpc` (headers only); return its id."""
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "https"),
                (":path", f"{SERVICE}/{rpc}"),
                (":authority", "localhost"),
                ("te", "trailers"),
                ("content-type", "application/grpc+proto"),
            ],
        )
        self.streams[stream_id] = StreamState()
        return stream_id

    def ignore_stream_limit(self) -> None:
        """Let us open more streams than the server's MAX_CONCURRENT_STREAMS allows."""
        self.h2.remote_settings[SettingCodes.MAX_CONCURRENT_STREAMS] = 1 << 20
        self.h2.remote_settings.acknowledge()

    def send(self, stream_id: int, data: bytes, *, end: bool = True) -> None:
        self.h2.send_data(stream_id, data, end_stream=end)

    def reset(self, stream_id: int) -> None:
        self.h2.reset_stream(stream_id)

    def send_frame(self, frame: Frame) -> None:
        """Queue a frame as it is, behind h2's back (it would refuse to send most abuse)."""
        self._out += self.h2.data_to_send()  # keep the order frames were asked for
        self._out += frame.serialize()

    def made_you_reset(self, rpc: str, request: bytes) -> int:
        """A complete call, then an empty DATA frame on its closed side: the server resets it."""
        self.ignore_stream_limit()  # they close as fast as the server's resets come back
        stream_id = self.request(rpc)
        self.send(stream_id, request)
        self.send_frame(DataFrame(stream_id, b""))
        return stream_id

    async def flush(self) -> None:
        data = bytes(self._out) + self.h2.data_to_send()
        self._out.clear()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def barrier(self, timeout: float = 10.0) -> None:
        """Return once the server has taken in every frame sent before: a PING, then its ACK.

        HTTP/2 peers process frames in order, so jobd's ACK comes after it has handed every
        earlier frame's events (the requests' HEADERS) to its handlers: a readiness signal, where
        waiting for "some bytes" or a fixed time only makes that likely.
        """
        payload = os.urandom(8)
        self.h2.ping(payload)
        await self.flush()
        assert await self.until(lambda: payload in self.ping_acks, timeout), "no PING ACK"

    async def pump(self, timeout: float) -> bool:
        """Read and process what arrives within `timeout`; False once the server has closed."""
        try:
            data = await asyncio.wait_for(self.reader.read(_READ_SIZE), timeout)
        except TimeoutError:
            return True
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.h2.receive_data(data):
            self._on_event(event)
        with contextlib.suppress(ConnectionError, OSError):
            await self.flush()
        return True

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Pump until `done()` or the server closes; whether `done()` came true in time."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or not await self.pump(min(left, 0.5)):
                return done()
        return True

    async def until_closed(self, timeout: float) -> bool:
        return await self.until(lambda: self.closed, timeout)

    async def close(self) -> None:
        self.writer.transport.abort()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    def _on_event(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            self._state(event.stream_id).headers.extend(event.headers)
        elif isinstance(event, DataReceived):
            self._state(event.stream_id).data += event.data
            if self.ack_data:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, TrailersReceived):
            self._state(event.stream_id).trailers.update(
                (k.decode(), v.decode()) for k, v in event.headers
            )
        elif isinstance(event, StreamEnded):
            self._state(event.stream_id).ended = True
        elif isinstance(event, StreamReset):
            self._state(event.stream_id).reset = event.error_code
        elif isinstance(event, ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, PingAckReceived) and event.ping_data is not None:
            self.ping_acks.add(event.ping_data)

    def _state(self, stream_id: int | None) -> StreamState:
        assert stream_id is not None
        return self.streams.setdefault(stream_id, StreamState())


def rss_kib(pid: int) -> int:
    """The process's resident set size (VmRSS), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def fd_count(pid: int) -> int:
    """How many file descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def session_processes(sid: int) -> list[int]:
    """Pids of every live process in session `sid` (a job leads its own session)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # After the command: state, ppid, pgrp, session, ...
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(name))
    return found


async def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        await asyncio.sleep(interval)
    return True
