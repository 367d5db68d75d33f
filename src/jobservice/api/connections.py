"""jobd's connections: counted from accept, handshaken under a deadline, gated, closed when idle.

Every TCP connection goes through three steps, each bounded:

1. accept: counted at once against `max_connections` (handshakes included), and refused with no
   crypto work when the server is full of established connections. Handshakes in progress have
   their own bound, `max_handshakes`: past it (or when the server is full) a new connection
   takes the place of the oldest handshake. A peer holding TCP connections that never finish a
   handshake so only ever holds handshake places, which every newcomer may take from it, never
   the established connections' share, and a real client needs its place for milliseconds;
2. TLS handshake (`_upstream.asyncio_tls.start_tls`), awaited here so that its end, good or
   bad, is always seen, within `handshake_timeout` seconds, or `PRESSED_HANDSHAKE_TIMEOUT` when
   more than half of the handshake places are taken;
3. the gate: the negotiated session is checked against the policy, and the certificate's user
   against `max_connections_per_user`, before any HTTP/2 byte is processed; then grpclib serves
   it until the peer leaves, until it has had no request in service for `idle_timeout` seconds,
   or until it makes the server do work faster than any client has reason to: streams reset by
   either side ("rapid reset", "MadeYouReset"), or frames that open no request (`h2guard`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable, Iterator
from typing import cast

from grpclib.protocol import H2Protocol
from h2.errors import ErrorCodes

from jobservice._upstream import grpclib_h2
from jobservice._upstream.asyncio_tls import start_tls
from jobservice.address import format_address
from jobservice.api import metrics
from jobservice.api.budget import TokenBucket
from jobservice.api.coalesce import CoalescingTransport
from jobservice.api.h2guard import (
    CONTROL_BURST,
    CONTROL_EARNED_PER_KIB,
    CONTROL_RATE,
    REPLIES_WHILE_PAUSED,
    RESET_BURST,
    RESET_RATE,
    FrameMeter,
)
from jobservice.api.peer import connection_identity
from jobservice.api.refusals import RefusalLog
from jobservice.logsafe import quote_field
from jobservice.security import tls
from jobservice.security.errors import AuthenticationError, TLSPolicyError

__all__ = ["GatedServer"]

log = logging.getLogger("jobservice.server")

# Application bytes that may arrive between the end of a handshake and the gate's decision (the
# client's HTTP/2 preface and first requests); a peer that sends more is not a gRPC client.
_EARLY_DATA_LIMIT = 1 << 20
# The user a certificate without a usable identity is counted as (it gets UNAUTHENTICATED).
_NO_IDENTITY = "-"
# The handshake deadline while handshake places are scarce: a client on a working network
# finishes in milliseconds; only stallers need more.
PRESSED_HANDSHAKE_TIMEOUT = 2.0


class GatedServer(grpclib_h2.ServerBase):
    """grpclib's Server, listening through the three bounded steps above."""

    def __init__(
        self,
        *args: object,
        max_connections: int,
        max_connections_per_user: int,
        handshake_timeout: float,
        idle_timeout: float,
        max_handshakes: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes or max_connections
        self.max_connections_per_user = max_connections_per_user
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.connections: set[_Connection] = set()
        self.users: Counter[str] = Counter()
        # Handshakes in progress and their TCP transports, oldest first.
        self.handshakes: dict[asyncio.Task[None], asyncio.Transport] = {}
        self._pressed = False
        self._context: ssl.SSLContext | None = None
        self._listener: asyncio.Server | None = None
        self.refusals = RefusalLog()

    async def listen(self, host: str, port: int, *, context: ssl.SSLContext) -> tuple[str, int]:
        """Listen on host:port; return the bound address (the real port when 0 was asked)."""
        loop = asyncio.get_running_loop()
        self._context = context
        self._listener = await loop.create_server(lambda: _Accepted(self), host, port)
        self.adopt_listener(self._listener)
        bound = self._listener.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    def stop_listening(self) -> None:
        """Accept no more connections and abandon handshakes in progress."""
        if self._listener is not None:
            self._listener.close()
        for task, transport in list(self.handshakes.items()):
            transport.abort()
            task.cancel()

    def close_connections(self) -> None:
        for connection in list(self.connections):
            connection.close()

    def use_context(self, context: ssl.SSLContext) -> None:
        """Handshake new connections with `context` (a reload); open ones keep their session."""
        self._context = context

    def close_where(self, condition: Callable[[ssl.SSLObject], bool]) -> Iterator[tuple[str, str]]:
        """Close each open connection whose TLS session meets `condition`; yield (peer, user)."""
        for connection in list(self.connections):
            ssl_object = connection.ssl_object
            if ssl_object is not None and condition(ssl_object):
                connection.close()
                yield connection.peer, connection.user

    def accept(self, transport: asyncio.Transport) -> None:
        """Step 1: count the new TCP connection, or drop it at once when the server is full."""
        full = len(self.connections) + len(self.handshakes) >= self.max_connections
        if full and not self.handshakes:
            metrics.limit_hit("connections")
            log.warning(
                "refused connection from %s: connection limit (%d) reached",
                _peer(transport),
                self.max_connections,
            )
            transport.abort()
            return
        if full or len(self.handshakes) >= self.max_handshakes:
            self._drop_oldest_handshake()
        pressed = len(self.handshakes) * 2 > self.max_handshakes
        if pressed and not self._pressed:
            log.warning(
                "over half of the %d handshake places taken: handshakes get %gs, and each new "
                "connection past the limit replaces the oldest handshake",
                self.max_handshakes,
                PRESSED_HANDSHAKE_TIMEOUT,
            )
        self._pressed = pressed
        timeout = min(self.handshake_timeout, PRESSED_HANDSHAKE_TIMEOUT) if pressed else None
        task = asyncio.get_running_loop().create_task(self._handshake(transport, timeout))
        self.handshakes[task] = transport
        task.add_done_callback(self._handshake_done)

    def _drop_oldest_handshake(self) -> None:
        oldest = next(iter(self.handshakes))
        # Its place is taken now, not when its task ends; and its socket is closed here, since
        # a task cancelled before its first step never runs the code that would close it.
        self.handshakes.pop(oldest).abort()
        oldest.cancel()

    def _handshake_done(self, task: asyncio.Task[None]) -> None:
        self.handshakes.pop(task, None)

    async def _handshake(self, transport: asyncio.Transport, deadline: float | None) -> None:
        """Step 2: the TLS handshake, within the deadline; then hand over to the gate."""
        assert self._context is not None
        peer = _peer(transport)
        connection = _Connection(self, peer)
        try:
            tls_transport = await start_tls(
                transport,
                connection,
                self._context,
                handshake_timeout=deadline or self.handshake_timeout,
            )
        except (OSError, EOFError) as exc:  # SSLError, the deadline's ConnectionAbortedError...
            reason = self.refusals.note(peer, exc)  # why, for the operator; rate-limited
            metrics.handshake_refused(reason.name.lower())
            tls_transport = None
        except asyncio.CancelledError:  # its place was taken, or the server is stopping
            log.debug("TLS handshake with %s abandoned", peer)
            connection.handler.close()
            raise
        else:
            if tls_transport is None or tls_transport.is_closing():
                metrics.handshake_refused("closed")
        if tls_transport is None or tls_transport.is_closing():  # failed, or the peer left
            connection.handler.close()  # else the server would keep its handler forever
            return
        connection.connection_made(tls_transport)


class _Accepted(asyncio.Protocol):
    """A TCP connection before TLS: it only tells the server that it exists."""

    def __init__(self, server: GatedServer) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._server.accept(transport)


class _Connection(H2Protocol):
    """grpclib's protocol behind the gate (step 3), closed after `idle_timeout` without requests.

    `connection_made` is called by `GatedServer` once the handshake is complete, before any
    application byte is processed; bytes that arrive before that are held, then replayed only if
    the session passes the policy check.
    """

    _transport: asyncio.Transport | None = None
    _admitted = False
    _idle_timer: asyncio.TimerHandle | None = None
    _flooded = False
    _abusive = False
    user = _NO_IDENTITY

    def __init__(self, server: GatedServer, peer: str) -> None:
        super().__init__(*server.protocol_args())
        self._owner = server
        self._peer = peer
        self.ssl_object: ssl.SSLObject | None = None
        self._early: bytearray | None = bytearray()
        self._resets = TokenBucket(RESET_BURST, RESET_RATE)
        self._frames = FrameMeter()
        self._free_frames = TokenBucket(CONTROL_BURST, CONTROL_RATE)
        self._data_sent = 0
        self._paused = False
        self._replies_while_paused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        early, self._early = self._early, None
        reason = self._refusal(transport)
        if reason is not None:
            log.warning("dropped connection from %s: %s", self._peer, reason)
            self.handler.close()
            transport.abort()  # no close_notify, no flush: just drop
            return
        self._admitted = True
        self.ssl_object = transport.get_extra_info("ssl_object")
        self._owner.connections.add(self)
        self._owner.users[self.user] += 1
        # Every write, grpclib's and ours (GOAWAY), goes through the wrapper: one TLS record
        # per loop iteration rather than one per frame; its close() sends what it holds first.
        self._transport = cast(asyncio.Transport, CoalescingTransport(transport))
        super().connection_made(self._transport)
        grpclib_h2.watch_streams(
            self,
            on_change=self._requests_changed,
            on_reset=self._stream_reset,
            on_protocol_error=self._protocol_error,
        )
        self._requests_changed(0)
        if early:
            self.data_received(bytes(early))

    def _refusal(self, transport: asyncio.Transport) -> str | None:
        """Why this freshly handshaken connection may not be served, or None."""
        if self._flooded:
            metrics.handshake_refused("flood")
            return "too much data before the handshake ended"
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            metrics.handshake_refused("not_tls")
            return "not a TLS connection"
        try:
            tls.check_negotiated(ssl_object)
        except TLSPolicyError as exc:
            metrics.handshake_refused("policy")
            return str(exc)
        try:
            self.user = connection_identity(ssl_object).user
        except AuthenticationError:
            self.user = _NO_IDENTITY  # served, to be answered UNAUTHENTICATED call by call
        limit = self._owner.max_connections_per_user
        if self._owner.users[self.user] >= limit:
            metrics.limit_hit("connections_per_user")
            user = quote_field(self.user)
            return f"user {user} has {limit} connections open (the per-user limit)"
        return None

    def data_received(self, data: bytes) -> None:
        if self._abusive:
            return  # closing: nothing more from this peer is worth a handler
        if self._admitted:
            if self._within_budget(data):
                super().data_received(data)
        elif self._early is not None and self._transport is None:
            self._early += data
            if len(self._early) > _EARLY_DATA_LIMIT:
                self._early = None  # nothing more is kept; the gate will refuse this peer
                self._flooded = True

    def pause_writing(self) -> None:
        if self._admitted:
            self._paused = True
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._paused = False
            self._replies_while_paused = 0
            super().resume_writing()

    def _within_budget(self, data: bytes) -> bool:
        """Count the frames in `data` that open no request; False (and closing) when over."""
        free, replies = self._frames.scan(data)
        if self._paused:
            self._replies_while_paused += replies
            if self._replies_while_paused > REPLIES_WHILE_PAUSED:
                log.warning(
                    "dropped connection from %s (user %s): over %d frames to acknowledge "
                    "while it reads nothing",
                    self._peer,
                    quote_field(self.user),
                    REPLIES_WHILE_PAUSED,
                )
                self._abusive = True
                self._drop()
                return False
        if not free:
            return True
        sent = grpclib_h2.data_sent(self)
        self._free_frames.earn((sent - self._data_sent) / 1024 * CONTROL_EARNED_PER_KIB)
        self._data_sent = sent
        if self._free_frames.spend(free):
            return True
        self._abusive = True
        log.warning(
            "closing connection from %s (user %s): more than %d frames without a request "
            "(PING, SETTINGS, WINDOW_UPDATE, PRIORITY, empty DATA...) at a rate over %g/s",
            self._peer,
            quote_field(self.user),
            CONTROL_BURST,
            CONTROL_RATE,
        )
        self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)
        return False

    def _drop(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._early = None
        self._cancel_idle_timer()
        if self._admitted:
            self._owner.connections.discard(self)
            self._owner.users[self.user] -= 1
            if not self._owner.users[self.user]:
                del self._owner.users[self.user]
            super().connection_lost(exc)

    @property
    def peer(self) -> str:
        return self._peer

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _requests_changed(self, in_service: int) -> None:
        """Arm the idle timer when the last request in service ends; disarm it when one comes."""
        self._cancel_idle_timer()
        if not in_service and self._transport is not None and not self._transport.is_closing():
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(self._owner.idle_timeout, self._close_idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_idle(self) -> None:
        self._idle_timer = None
        log.info(
            "closing connection from %s: no request for %gs",
            self._peer,
            self._owner.idle_timeout,
        )
        self._goaway(ErrorCodes.NO_ERROR)

    def _stream_reset(self) -> None:
        if self._abusive or self._resets.spend():
            return
        self._abusive = True
        log.warning(
            "closing connection from %s (user %s): more than %d streams reset (by it or for its "
            "errors) at a rate over %g/s",
            self._peer,
            quote_field(self.user),
            RESET_BURST,
            RESET_RATE,
        )
        self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)

    def _protocol_error(self) -> None:
        # Every call on the connection ends unanswered, and the calls that arrived in the same
        # read as the offending frame never started (h2 drops their events with the error):
        # the operator sees why here, as no audit line will say it.
        log.warning(
            "closing connection from %s (user %s): HTTP/2 protocol error",
            self._peer,
            quote_field(self.user),
        )

    def _goaway(self, code: ErrorCodes) -> None:
        """Tell the client why (GOAWAY), then close: it learns the close is deliberate."""
        grpclib_h2.h2_connection(self).close_connection(error_code=code)
        self.connection.flush()
        self.close()


def _peer(transport: asyncio.BaseTransport) -> str:
    addr = transport.get_extra_info("peername")
    if not addr:
        return "unknown peer"
    return format_address(addr[0], addr[1])
