"""The gRPC face of the service: every call goes identify -> read -> authorize -> body -> audit.

Handler bodies (`servicer.RpcBodies`) never see a call that this module has not
authenticated, size-checked, decoded and authorized; every exception leaves through the one
error table; every call leaves one audit line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from google.protobuf.message import DecodeError, Message
from grpclib.server import Stream

from jobservice._upstream import grpclib_h2
from jobservice.address import format_address
from jobservice.api import metrics
from jobservice.api.audit import RefusedLines
from jobservice.api.authz import RULES, Authorizer
from jobservice.api.errors import (
    RequestTimeout,
    RequestTooLarge,
    ServiceUnavailable,
    to_grpc_error,
)
from jobservice.api.peer import connection_identity
from jobservice.api.servicer import RpcBodies
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.api.v1.jobservice_grpc import JobServiceBase
from jobservice.core import InvalidRequest, LimitExceeded
from jobservice.logsafe import LOG_FIELDS, quote_field
from jobservice.security.errors import AuthenticationError
from jobservice.security.identity import Identity

__all__ = [
    "Dispatcher",
]

audit_log = logging.getLogger("jobservice.audit")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

_HEADER = struct.Struct(">?I")  # gRPC message prefix: compressed flag, big-endian length


class Dispatcher(JobServiceBase):
    """The grpclib service jobservice.v1.JobService: gates and audits each call of RpcBodies."""

    def __init__(
        self,
        bodies: RpcBodies,
        authorizer: Authorizer,
        *,
        max_streams: int,
        max_streams_per_user: int,
        max_request_bytes: int,
        request_timeout: float,
    ) -> None:
        missing = {name.rsplit("/", 1)[1] for name in self.__mapping__()} - RULES.keys()
        if missing:  # an RPC without an authorization rule must never be served
            raise RuntimeError(f"no authorization rule for {sorted(missing)}")
        self._bodies = bodies
        self._authorizer = authorizer
        self._max_streams = max_streams
        self._max_streams_per_user = max_streams_per_user
        self._max_request_bytes = max_request_bytes
        self._request_timeout = request_timeout
        self._open_streams = 0
        self._streams_by_user: Counter[str] = Counter()
        self._open_calls = 0
        self._refused_lines = RefusedLines()
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    async def Start(self, stream: Stream[pb.StartRequest, pb.StartResponse]) -> None:
        await self._unary("Start", stream, pb.StartRequest, self._bodies.start)

    async def Stop(self, stream: Stream[pb.StopRequest, pb.StopResponse]) -> None:
        await self._unary("Stop", stream, pb.StopRequest, self._bodies.stop)

    async def Remove(self, stream: Stream[pb.RemoveRequest, pb.RemoveResponse]) -> None:
        await self._unary("Remove", stream, pb.RemoveRequest, self._bodies.remove)

    async def Status(self, stream: Stream[pb.StatusRequest, pb.StatusResponse]) -> None:
        await self._unary("Status", stream, pb.StatusRequest, self._bodies.status)

    async def List(self, stream: Stream[pb.ListRequest, pb.ListResponse]) -> None:
        await self._unary("List", stream, pb.ListRequest, self._bodies.list)

    async def Nodes(self, stream: Stream[pb.NodesRequest, pb.NodesResponse]) -> None:
        await self._unary("Nodes", stream, pb.NodesRequest, self._bodies.nodes)

    async def Output(self, stream: Stream[pb.OutputRequest, pb.OutputResponse]) -> None:
        async with self._call("Output", stream, pb.OutputRequest) as (caller, request, _):
            with self._stream_slot(caller.user):
                # Headers now, not with the first chunk: the client learns at once that its
                # stream was accepted, even for a job that stays silent.
                await stream.send_initial_metadata()
                responses = self._bodies.output(caller, request)
                async with contextlib.aclosing(responses):
                    async for response in responses:
                        # An EncodedMessage passes through the server's PassThroughCodec.
                        await stream.send_message(cast(pb.OutputResponse, response))

    async def WriteStdin(self, stream: Stream[pb.StdinChunk, pb.WriteStdinResponse]) -> None:
        async with self._call("WriteStdin", stream, pb.StdinChunk) as (caller, first, _):
            with self._stream_slot(caller.user):  # held open like an Output stream: counted

                async def rest() -> pb.StdinChunk | None:
                    return await _read_next(stream, pb.StdinChunk, self._max_request_bytes)

                await stream.send_message(await self._bodies.write_stdin(caller, first, rest))

    @property
    def open_streams(self) -> int:
        """Output streams open now (the metrics read it)."""
        return self._open_streams

    async def wait_idle(self) -> None:
        """Return once no call is open (used at shutdown, after `draining` is set)."""
        await self._idle.wait()

    async def _unary(
        self,
        rpc: str,
        stream: Stream[Req, Resp],
        request_type: type[Req],
        body: Callable[[Identity, Req], Awaitable[Resp]],
    ) -> None:
        async with self._call(rpc, stream, request_type) as (caller, request, audit):
            response = await body(caller, request)
            audit.job = getattr(response, "job_id", audit.job)  # Start: the new job's id
            await stream.send_message(response)

    @contextlib.asynccontextmanager
    async def admit(
        self, rpc: str, stream: Stream[Any, Any], check: Callable[[Identity], None]
    ) -> AsyncIterator[Identity]:
        """The door for services beside this one (health, reflection): as `_call`, but the
        handler reads its own requests and `check` authorizes the caller.

        Such calls do not hold up a shutdown (a health Watch never ends by itself).
        """
        async with self._admitted(rpc, stream, counted=False) as (caller, _):
            check(caller)
            yield caller

    @contextlib.asynccontextmanager
    async def _call(
        self, rpc: str, stream: Stream[Req, Any], request_type: type[Req]
    ) -> AsyncIterator[tuple[Identity, Req, _Audit]]:
        """Authenticate, read and authorize the request; map errors and audit on the way out."""
        async with self._admitted(rpc, stream) as (caller, audit):
            request = await _read_request(
                stream, request_type, self._max_request_bytes, self._request_timeout
            )
            if RULES[rpc].takes_job_id:
                audit.job = request.job_id  # type: ignore[attr-defined]
                await self._bodies.prepare(request.job_id)  # type: ignore[attr-defined]
            self._authorizer.authorize(caller, rpc, audit.job)
            yield caller, request, audit

    @contextlib.asynccontextmanager
    async def _admitted(
        self, rpc: str, stream: Stream[Any, Any], *, counted: bool = True
    ) -> AsyncIterator[tuple[Identity, _Audit]]:
        """Identify the caller; map errors, audit and count the call on the way out."""
        audit = _Audit(rpc, _peer(stream))
        if counted:
            self._open_calls += 1
            self._idle.clear()
        try:
            caller = _identify(stream)
            audit.user = caller.user
            if self.draining:
                raise ServiceUnavailable("the server is shutting down")
            yield caller, audit
        except asyncio.CancelledError:
            audit.result = "CANCELLED"
            raise
        except Exception as exc:
            error = to_grpc_error(exc)
            audit.result = error.status.name
            limit = _limit_of(rpc, exc)
            if limit is not None:
                metrics.limit_hit(limit)
            raise error from None
        finally:
            audit.emit(self._refused_lines)
            metrics.rpc_done(rpc, audit.result, audit.seconds())
            if counted:
                self._open_calls -= 1
                if not self._open_calls:
                    self._idle.set()

    @contextlib.contextmanager
    def _stream_slot(self, user: str) -> Iterator[None]:
        """Count an open Output stream, refusing one over the server's or the user's limit."""
        if self._open_streams >= self._max_streams:
            raise LimitExceeded(f"too many open output streams (limit {self._max_streams})")
        if self._streams_by_user[user] >= self._max_streams_per_user:
            raise LimitExceeded(
                f"too many open output streams for {quote_field(user)} "
                f"(limit {self._max_streams_per_user} per user)"
            )
        self._open_streams += 1
        self._streams_by_user[user] += 1
        try:
            yield
        finally:
            self._open_streams -= 1
            self._streams_by_user[user] -= 1
            if not self._streams_by_user[user]:
                del self._streams_by_user[user]


@dataclass
class _Audit:
    """One audit line: who called what on which job, and the status they got."""

    rpc: str
    peer: str
    user: str | None = None
    job: int | None = None
    result: str = "OK"
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def emit(self, refused: RefusedLines) -> None:
        """Write the line, unless it is a failed call's over the caller's budget."""
        if self.result not in ("OK", "INTERNAL") and not refused.allow(self.user or "-"):
            return
        elapsed_ms = self.seconds() * 1000
        # The same fields as keys, for a log written as JSON (`jobd serve --log-format json`).
        fields = {
            "user": self.user,
            "rpc": self.rpc,
            "job": self.job,
            "result": self.result,
            "peer": self.peer,
            "ms": round(elapsed_ms, 1),
        }
        audit_log.info(
            "audit user=%s rpc=%s job=%s result=%s peer=%s ms=%.1f",
            quote_field(self.user) if self.user is not None else "-",
            self.rpc,
            self.job if self.job is not None else "-",
            self.result,
            self.peer,
            elapsed_ms,
            extra={LOG_FIELDS: fields},
        )


def _limit_of(rpc: str, exc: Exception) -> str | None:
    """Which of `metrics.LIMITS` refused this call, if one did."""
    if isinstance(exc, RequestTooLarge):
        return "request_size"
    if isinstance(exc, RequestTimeout):
        return "request_timeout"
    if isinstance(exc, LimitExceeded):
        return "output_streams" if rpc == "Output" else "running_jobs"
    return None


def _identify(stream: Stream[Any, Any]) -> Identity:
    """The caller's identity, from the certificate TLS verified on this connection only."""
    # grpclib's Peer exposes only the decoded certificate; the identity module takes the DER
    # bytes TLS verified, so this reaches for the connection's transport itself.
    ssl_object = grpclib_h2.stream_transport(stream).get_extra_info("ssl_object")
    if ssl_object is None:
        raise AuthenticationError("the connection is not protected by TLS")
    return connection_identity(ssl_object)


def _peer(stream: Stream[Any, Any]) -> str:
    addr = stream.peer.addr()
    if addr is None:
        return "-"
    return format_address(addr[0], addr[1])


async def _read_request(
    stream: Stream[Req, Any], request_type: type[Req], limit: int, seconds: float
) -> Req:
    """The call's single request message, refused unread if its declared size is over `limit`.

    grpclib's own reader buffers whatever length the client declares before decoding, so a
    4 GiB prefix would be read into memory. This reads the same framing with a bound, and turns
    protobuf decode errors (corrupt wire data, invalid UTF-8 in a string) into INVALID_ARGUMENT.
    It also gives the whole message `seconds` to arrive: grpclib waits forever, so a
    client that opens calls and never sends would hold them, and its connection, open.
    """
    try:
        async with asyncio.timeout(seconds):
            data = await _read_frame(stream, limit)
    except TimeoutError:
        raise RequestTimeout(f"request not received within {seconds:g} s (the limit)") from None
    if data is None:  # not with end_ok=False; for the type checker
        raise InvalidRequest("the call carries no request message")
    try:
        return request_type.FromString(data)
    except DecodeError:
        raise InvalidRequest(f"malformed {request_type.DESCRIPTOR.name} message") from None


async def _read_next(stream: Stream[Req, Any], request_type: type[Req], limit: int) -> Req | None:
    """A client-streaming call's next message (size-checked as the first), or None at its end.

    No deadline: a writer may pause (a person typing); the call holds a stream slot meanwhile.
    """
    data = await _read_frame(stream, limit, end_ok=True)
    if data is None:
        return None
    try:
        return request_type.FromString(data)
    except DecodeError:
        raise InvalidRequest(f"malformed {request_type.DESCRIPTOR.name} message") from None


async def _read_frame(
    stream: Stream[Any, Any], limit: int, *, end_ok: bool = False
) -> bytes | None:
    """One length-prefixed gRPC message's bytes; None when `end_ok` and the call has ended."""
    try:
        header = await grpclib_h2.recv_exactly(stream, _HEADER.size)
        if not header and end_ok:
            return None
        if len(header) != _HEADER.size:
            raise InvalidRequest("the call carries no request message")
        compressed, length = _HEADER.unpack(header)
        if compressed:
            raise InvalidRequest("compressed requests are not supported")
        if length > limit:
            raise RequestTooLarge(f"request of {length} bytes is over the {limit}-byte limit")
        return await grpclib_h2.recv_exactly(stream, length) if length else b""
    except EOFError:
        raise InvalidRequest("the request message is truncated") from None
