"""jobd's server: grpclib over strict mutual TLS, driving one JobCoordinator, with a clean stop."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from grpclib.config import Configuration
from grpclib.protocol import H2Protocol
from grpclib.server import Handler, Server

from jobservice.api.authz import Authorizer
from jobservice.api.dispatch import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_STREAMS, JobService
from jobservice.api.servicer import JobServicer
from jobservice.core import JobCoordinator, Limits
from jobservice.security import tls
from jobservice.security.errors import TLSPolicyError
from jobservice.security.policy import Policy

__all__ = ["JobServer", "ServerConfig"]

log = logging.getLogger("jobservice.server")

# Requests are small; a small inbound window bounds what a client can make the server buffer
# per stream and per connection before a handler has read anything.
_INBOUND_STREAM_WINDOW = 256 << 10
_INBOUND_CONNECTION_WINDOW = 1 << 20


@dataclass(frozen=True)
class ServerConfig:
    """Everything `jobd serve` configures."""

    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    data_dir: Path
    policy: Policy = field(default_factory=Policy.default)
    stop_grace: float = 5.0
    handshake_timeout: float = 10.0
    limits: Limits = field(default_factory=Limits)
    max_streams: int = DEFAULT_MAX_STREAMS
    max_connections: int = 1000
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # After running jobs are stopped, how long open calls get to finish before being cancelled.
    drain_timeout: float = 5.0


class JobServer:
    """Listens, serves, and on `shutdown` stops as an operator expects.

    Shutdown order: refuse new calls and connections; stop running jobs with the normal stop
    procedure, so every Output stream ends with its job's final status; give open calls a
    bounded time to finish; then close every connection.
    """

    def __init__(self, config: ServerConfig, *, context: ssl.SSLContext | None = None) -> None:
        self.config = config
        # Built first: a context whose policy did not take raises here, before anything runs.
        self._context = context or tls.server_context(
            ca=config.ca, cert=config.cert, key=config.key
        )
        self.coordinator = JobCoordinator(
            config.data_dir, stop_grace=config.stop_grace, limits=config.limits
        )
        authorizer = Authorizer(config.policy, lambda job_id: self.coordinator.status(job_id).owner)
        servicer = JobServicer(self.coordinator, authorizer.may_see)
        self.service = JobService(
            servicer,
            authorizer,
            max_streams=config.max_streams,
            max_request_bytes=config.max_request_bytes,
        )
        self._grpc = _StrictServer(
            [self.service],
            config=Configuration(
                http2_connection_window_size=_INBOUND_CONNECTION_WINDOW,
                http2_stream_window_size=_INBOUND_STREAM_WINDOW,
            ),
            max_connections=config.max_connections,
        )

    async def start(self) -> tuple[str, int]:
        """Listen; return the bound address (the real port when 0 was asked)."""
        return await self._grpc.listen(
            self.config.host,
            self.config.port,
            ssl=self._context,
            handshake_timeout=self.config.handshake_timeout,
        )

    async def shutdown(self) -> None:
        """Stop gracefully, within about stop_grace + drain_timeout seconds."""
        self.service.draining = True
        self._grpc.stop_listening()
        await self.coordinator.close()
        try:
            await asyncio.wait_for(self.service.wait_idle(), self.config.drain_timeout)
        except TimeoutError:
            log.warning("calls still open after %.1fs; cancelling them", self.config.drain_timeout)
        self._grpc.close()
        await self._grpc.wait_closed()
        self._grpc.close_connections()


class _StrictServer(Server):
    """grpclib's Server with a TLS handshake timeout, a connection limit, and the TLS gate."""

    def __init__(self, *args: object, max_connections: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.max_connections = max_connections
        self.connections: set[_GatedProtocol] = set()

    async def listen(
        self, host: str, port: int, *, ssl: ssl.SSLContext, handshake_timeout: float
    ) -> tuple[str, int]:
        # grpclib's start() has no handshake timeout: without one a client that opens TCP and
        # never speaks TLS holds a socket and a protocol until the OS gives up.
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol_factory, host, port, ssl=ssl, ssl_handshake_timeout=handshake_timeout
        )
        self._server_closed_fut = loop.create_future()
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()

    def close_connections(self) -> None:
        for protocol in list(self.connections):
            protocol.close()

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = Handler(self._mapping, self._codec, self._status_details_codec, self.__dispatch__)
        self._handlers.add(handler)
        return _GatedProtocol(handler, self._config, self._h2_config, server=self)


class _GatedProtocol(H2Protocol):
    """grpclib's protocol behind a gate: the negotiated TLS session is checked first.

    asyncio calls `connection_made` once the TLS handshake is complete and before delivering
    any application data, so a connection refused here never has an HTTP/2 byte processed.
    """

    _transport: asyncio.BaseTransport | None = None
    _admitted = False

    def __init__(self, *args: object, server: _StrictServer) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._owner = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        reason = self._refusal(transport)
        if reason is not None:
            log.warning("dropped connection from %s: %s", _peer(transport), reason)
            self.handler.close()
            cast(asyncio.Transport, transport).abort()  # no close_notify, no flush: just drop
            return
        self._admitted = True
        self._owner.connections.add(self)
        super().connection_made(transport)

    def _refusal(self, transport: asyncio.BaseTransport) -> str | None:
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return "not a TLS connection"
        try:
            tls.check_negotiated(ssl_object)
        except TLSPolicyError as exc:
            return str(exc)
        if len(self._owner.connections) >= self._owner.max_connections:
            return f"connection limit ({self._owner.max_connections}) reached"
        return None

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            super().data_received(data)

    def pause_writing(self) -> None:
        if self._admitted:
            super().pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            super().resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted:
            self._owner.connections.discard(self)
            super().connection_lost(exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _peer(transport: asyncio.BaseTransport) -> str:
    addr = transport.get_extra_info("peername")
    return f"{addr[0]}:{addr[1]}" if addr else "unknown peer"
