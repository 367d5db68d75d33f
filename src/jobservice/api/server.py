"""jobd's server: grpclib over strict mutual TLS, driving one JobCoordinator, with a clean stop."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from grpclib.config import Configuration

from jobservice.api.authz import Authorizer
from jobservice.api.codec import PassThroughCodec
from jobservice.api.connections import GatedServer
from jobservice.api.dispatch import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_STREAMS_PER_USER,
    DEFAULT_REQUEST_TIMEOUT,
    JobService,
)
from jobservice.api.servicer import JobServicer
from jobservice.core import JobCoordinator, Limits
from jobservice.security import tls
from jobservice.security.policy import Policy

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_USER",
    "JobServer",
    "ServerConfig",
]

log = logging.getLogger("jobservice.server")

# Requests are small; a small inbound window bounds what a client can make the server buffer
# per stream and per connection before a handler has read anything.
_INBOUND_STREAM_WINDOW = 256 << 10
_INBOUND_CONNECTION_WINDOW = 1 << 20

DEFAULT_HANDSHAKE_TIMEOUT = 10.0
# Clients open a connection per command or keep one busy with streams; a connection with nothing
# open for a minute is forgotten or abandoned, and holds one of `max_connections` places.
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_MAX_CONNECTIONS = 1000
# One user's share: jobctl opens one connection per command, the benchmarks 64 followers.
DEFAULT_MAX_CONNECTIONS_PER_USER = 100


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
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    limits: Limits = field(default_factory=Limits)
    max_streams: int = DEFAULT_MAX_STREAMS
    max_streams_per_user: int = DEFAULT_MAX_STREAMS_PER_USER
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_user: int = DEFAULT_MAX_CONNECTIONS_PER_USER
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
            max_streams_per_user=config.max_streams_per_user,
            max_request_bytes=config.max_request_bytes,
            request_timeout=config.request_timeout,
        )
        self._grpc = GatedServer(
            [self.service],
            codec=PassThroughCodec(),
            config=Configuration(
                http2_connection_window_size=_INBOUND_CONNECTION_WINDOW,
                http2_stream_window_size=_INBOUND_STREAM_WINDOW,
            ),
            max_connections=config.max_connections,
            max_connections_per_user=config.max_connections_per_user,
            handshake_timeout=config.handshake_timeout,
            idle_timeout=config.idle_timeout,
        )

    async def start(self) -> tuple[str, int]:
        """Listen; return the bound address (the real port when 0 was asked)."""
        return await self._grpc.listen(self.config.host, self.config.port, context=self._context)

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
