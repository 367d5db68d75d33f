"""jobd's server: grpclib over strict mutual TLS, driving one JobBackend, with a clean stop.

The backend is this host's JobCoordinator unless one is given (a cluster front).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from grpclib.config import Configuration

from jobservice.api import metrics
from jobservice.api.authz import Authorizer
from jobservice.api.codec import PassThroughCodec
from jobservice.api.connections import GatedServer
from jobservice.api.dispatch import Dispatcher
from jobservice.api.jobsettings import JobSettings, default_run_as
from jobservice.api.reload import ReloadOutcome, TLSMaterial, load_tls, reload_server
from jobservice.api.servicer import RpcBodies
from jobservice.api.standard import StandardServices
from jobservice.core import JobCoordinator, Limits, Retention
from jobservice.core.backend import JobBackend, NodeDirectory
from jobservice.core.confine import Confinement
from jobservice.core.store import JobStore
from jobservice.security.policy import Policy

__all__ = [
    "JobServer",
    "JobSettings",
    "NodeMetrics",
    "ServerConfig",
    "config_default",
    "default_run_as",
]

log = logging.getLogger("jobservice.server")

# Requests are small; a small inbound window bounds what a client can make the server buffer
# per stream and per connection before a handler has read anything.
_INBOUND_STREAM_WINDOW = 256 << 10
_INBOUND_CONNECTION_WINDOW = 1 << 20


@dataclass(frozen=True)
class ServerConfig:
    """Everything `jobd serve` configures; its defaults are the server's, `jobd serve`'s too."""

    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    data_dir: Path
    policy: Policy = field(default_factory=Policy.default)
    # The files a reload (SIGHUP) reads again: the policy's (None: built in) and the CRL.
    policy_file: Path | None = None
    crl: Path | None = None
    # Where to serve Prometheus metrics (plain HTTP); None: metrics off.
    metrics_address: tuple[str, int] | None = None
    # Seconds between SIGTERM and SIGKILL when a job is stopped.
    stop_grace: float = 5.0
    handshake_timeout: float = 10.0
    # Clients open a connection per command or keep one busy with streams; a connection with
    # nothing open for a minute is forgotten or abandoned, and holds one of `max_connections`.
    idle_timeout: float = 60.0
    # A request message is a few bytes to 2 MiB; a client that has not sent it in this time is
    # not slow but stalling, and holds a call slot (and its connection) open.
    request_timeout: float = 10.0
    limits: Limits = field(default_factory=Limits)
    # When finished jobs are removed (record and output); jobd's default keeps them 7 days.
    retention: Retention = field(default_factory=Retention)
    max_streams: int = 1000
    # One user's share of the streams: a client that opens streams and never reads them (each
    # then holds its place for as long as its job runs) starves only itself.
    max_streams_per_user: int = 100
    max_connections: int = 1000
    # TLS handshakes in progress, a share of `max_connections`: past it a new connection takes
    # the place of the oldest handshake, so peers that never finish one cannot lock others out.
    max_handshakes: int = 200
    # One user's share: jobctl opens one connection per command, the benchmarks 64 followers.
    max_connections_per_user: int = 100
    # Above the library's own 1 MiB limit on a start request's content, so the library's precise
    # message wins for start requests that are merely too big, while a huge frame is refused.
    max_request_bytes: int = 2 << 20
    confinement: Confinement | None = None  # None: jobs run unconfined
    jobs: JobSettings = field(default_factory=JobSettings)  # run-as account, limits per user
    # After running jobs are stopped, how long open calls get to finish before being cancelled.
    drain_timeout: float = 5.0


def config_default(name: str) -> Any:
    """The default of ServerConfig's field `name`: one place for jobd's defaults."""
    for spec in fields(ServerConfig):
        if spec.name == name:
            if spec.default_factory is not MISSING:
                return spec.default_factory()
            if spec.default is MISSING:
                raise KeyError(f"ServerConfig.{name} has no default")
            return spec.default
    raise KeyError(f"ServerConfig has no field {name!r}")


class JobServer:
    """Listens, serves, and on `shutdown` stops as an operator expects.

    Shutdown order: refuse new calls and connections; stop running jobs with the normal stop
    procedure, so every Output stream ends with its job's final status; give open calls a
    bounded time to finish; then close every connection.
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        context: ssl.SSLContext | None = None,
        store: JobStore | None = None,
        backend: JobBackend | None = None,
        directory: NodeDirectory | None = None,
    ) -> None:
        self.config = config
        # Built first: a context whose policy did not take raises here, before anything runs.
        self._context = (
            context
            or load_tls(ca=config.ca, cert=config.cert, key=config.key, crl=config.crl).context
        )
        # With a store, this lists the recorded jobs again and recovers from a crash first.
        if config.metrics_address is not None:
            metrics.enable()  # first: jobs found lost as the coordinator starts are counted
        self.jobs = metrics.JobMetrics()
        self.coordinator: JobBackend = backend or JobCoordinator(
            config.data_dir,
            stop_grace=config.stop_grace,
            limits=config.limits,
            store=store,
            retention=config.retention,
            confinement=config.confinement,
            observer=self.jobs,
        )
        self._tidy: asyncio.Task[None] | None = None
        self.authorizer = Authorizer(config.policy, self.coordinator.owner)
        self.bodies = RpcBodies(self.coordinator, self.authorizer.may_see, config.jobs, directory)
        self.dispatcher = Dispatcher(
            self.bodies,
            self.authorizer,
            max_streams=config.max_streams,
            max_streams_per_user=config.max_streams_per_user,
            max_request_bytes=config.max_request_bytes,
            request_timeout=config.request_timeout,
        )
        self.standard = StandardServices(
            [self.dispatcher], self.dispatcher.admit, self.authorizer.is_known
        )
        self._grpc = GatedServer(
            [self.dispatcher, *self.standard.services],
            codec=PassThroughCodec(),
            config=Configuration(
                http2_connection_window_size=_INBOUND_CONNECTION_WINDOW,
                http2_stream_window_size=_INBOUND_STREAM_WINDOW,
            ),
            max_connections=config.max_connections,
            max_handshakes=config.max_handshakes,
            max_connections_per_user=config.max_connections_per_user,
            handshake_timeout=config.handshake_timeout,
            idle_timeout=config.idle_timeout,
        )

    async def start(self) -> tuple[str, int]:
        """Listen; return the bound address (the real port when 0 was asked)."""
        address = await self._grpc.listen(self.config.host, self.config.port, context=self._context)
        self._tidy = asyncio.create_task(self.coordinator.keep_tidy())
        return address

    def serve_metrics(self) -> tuple[str, int]:
        """Serve the metrics on `config.metrics_address`; the bound address (port 0: a free one).

        Call it in the event loop, before `start`, so that no job goes uncounted.
        """
        assert self.config.metrics_address is not None
        metrics.watch(self.live, asyncio.get_running_loop())
        return metrics.listen(*self.config.metrics_address)

    def live(self) -> metrics.Live:
        """The figures of the present that a metrics scrape reads (on the event loop)."""
        return self.jobs.live(
            self.coordinator.status, self.dispatcher.open_streams, len(self._grpc.connections)
        )

    def reload(self) -> ReloadOutcome:
        """Read the policy and TLS files again (SIGHUP); see `reload` for what is kept when."""
        return reload_server(self)

    def use_tls(self, material: TLSMaterial) -> None:
        """Handshakes from now on use `material`; open connections keep what they have."""
        self._context = material.context
        self._grpc.use_context(material.context)

    def close_connections_where(
        self, condition: Callable[[ssl.SSLObject], bool]
    ) -> Iterator[tuple[str, str]]:
        """Close each open connection whose TLS session meets `condition`; yield (peer, user)."""
        return self._grpc.close_where(condition)

    async def shutdown(self) -> None:
        """Stop gracefully, within about stop_grace + drain_timeout seconds."""
        self.standard.stopping()
        self.dispatcher.draining = True
        self._grpc.stop_listening()
        if self._tidy is not None:
            self._tidy.cancel()
        await self.coordinator.close()
        try:
            await asyncio.wait_for(self.dispatcher.wait_idle(), self.config.drain_timeout)
        except TimeoutError:
            log.warning("calls still open after %.1fs; cancelling them", self.config.drain_timeout)
        self._grpc.close()
        await self._grpc.wait_closed()
        self._grpc.close_connections()


class NodeMetrics:
    """The metrics of `jobd agent`, which runs a cluster's jobs and serves no API of its own:
    its jobs (started, ended by outcome, running, output recorded) on a listener like jobd's."""

    def __init__(self, address: tuple[str, int]) -> None:
        metrics.enable()  # before the coordinator exists: jobs it finds lost are counted
        self.address = address
        self.jobs = metrics.JobMetrics()  # the coordinator's observer

    def serve(self, coordinator: JobCoordinator) -> tuple[str, int]:
        """Serve them; the bound address. Call it in the event loop, before jobs can start."""
        metrics.watch(lambda: self.jobs.live(coordinator.status), asyncio.get_running_loop())
        return metrics.listen(*self.address)
