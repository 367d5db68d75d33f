"""`jobd serve`: run the job service on an address until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import os
import resource
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from jobservice._upstream.hyperframe import quiet_data_frame_repr
from jobservice.address import format_address, parse_address
from jobservice.api.server import JobServer, ServerConfig, config_default
from jobservice.cli.jobd import preflight
from jobservice.cli.jobd.config import config_option
from jobservice.cli.jobd.confine import confine_options, confinement_from
from jobservice.cli.jobd.logsetup import LOG_FORMATS, configure_logging
from jobservice.cli.jobd.private import check_key_files, make_private
from jobservice.cli.jobd.units import BYTES, DURATION
from jobservice.core import Limits, Retention
from jobservice.core.store import JobStore
from jobservice.logsafe import LOG_FIELDS
from jobservice.security.errors import PolicyError, TLSPolicyError
from jobservice.security.policy import Policy
from jobservice.store import SqliteStore, StoreError

if TYPE_CHECKING:
    from jobservice.cluster.connect import NatsSettings

__all__ = [
    "announcer",
    "default_data_dir",
    "fds_needed",
    "nats_options",
    "on_hangup",
    "parse_listen",
    "serve",
    "serve_metrics",
]

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("jobservice.jobd")

_EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_SECONDS = click.FloatRange(min=0, min_open=True)
_LIMITS: Limits = config_default("limits")
# File descriptors per running job: two output pipes, a pidfd and the output log.
_FDS_PER_JOB = 4
# The server's own: listening socket, epoll, logs, the Python runtime.
_FDS_BASE = 64


def default_data_dir() -> Path:
    """$JOBD_DATA_DIR, else $XDG_STATE_HOME/jobservice, else ~/.local/state/jobservice."""
    if os.environ.get("JOBD_DATA_DIR"):
        return Path(os.environ["JOBD_DATA_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "jobservice"


def nats_options(*, required: bool) -> Callable[[F], F]:
    """--nats, shared by `jobd serve` (a cluster front) and `jobd agent`."""

    def decorate(command: F) -> F:
        return click.option(
            "--nats",
            required=required,
            metavar="URL[,URL...]",
            help="The NATS JetStream cluster (tls://HOST:PORT, comma-separated)"
            + ("." if required else ": run as a stateless cluster front, running nothing here."),
        )(command)

    return decorate


@click.command()
@nats_options(required=False)
@click.option(
    "--replicas",
    default=3,
    show_default=True,
    type=click.IntRange(min=1, max=5),
    help="With --nats: replicas of the cluster's streams and buckets when this front creates "
    "them (fronts create them; a single NATS server holds 1 whatever this says).",
)
@click.option(
    "--nats-cert",
    type=_EXISTING_FILE,
    help="With --nats: this front's certificate for NATS (jobd pki init --front NAME).",
)
@click.option("--nats-key", type=_EXISTING_FILE, help="With --nats: that certificate's key.")
@click.option(
    "--listen",
    default="127.0.0.1:50051",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to listen on; [::1]:PORT for IPv6, port 0 for any free port.",
)
@click.option(
    "--ca", required=True, type=_EXISTING_FILE, help="CA certificate clients must chain to."
)
@click.option("--cert", required=True, type=_EXISTING_FILE, help="The server's certificate.")
@click.option("--key", required=True, type=_EXISTING_FILE, help="The server's private key.")
@click.option(
    "--crl",
    type=_EXISTING_FILE,
    help="Certificate revocation list (PEM, signed by the CA; `jobd pki revoke` writes one): "
    "revoked client certificates fail the handshake.",
)
@click.option(
    "--policy",
    type=_EXISTING_FILE,
    help="Authorization policy (TOML). Default: built in (alice: Self/Task Manager, "
    "bob: All/Analyst, charlie: All/Task Manager).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where job records (db/jobs.db, SQLite; environment names only, never values) and "
    "output logs are kept; a restart lists every job again. Default: $JOBD_DATA_DIR, else "
    "$XDG_STATE_HOME/jobservice, else ~/.local/state/jobservice.",
)
@click.option(
    "--stop-grace",
    default=config_default("stop_grace"),
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between SIGTERM and SIGKILL when a job is stopped.",
)
@click.option(
    "--handshake-timeout",
    default=config_default("handshake_timeout"),
    show_default=True,
    type=_SECONDS,
    help="Seconds a client has to complete the TLS handshake.",
)
@click.option(
    "--idle-timeout",
    default=config_default("idle_timeout"),
    show_default=True,
    type=_SECONDS,
    help="Seconds a connection may stay open without any call before it is closed.",
)
@click.option(
    "--request-timeout",
    default=config_default("request_timeout"),
    show_default=True,
    type=_SECONDS,
    help="Seconds a call's request message has to arrive.",
)
@click.option(
    "--max-jobs-per-user",
    default=_LIMITS.max_running_jobs_per_owner,
    show_default=True,
    type=click.IntRange(min=0),
    help="Running jobs one user may have at once (0: no limit); with --nats, across the "
    "cluster (docs/cluster.md, 'Limits').",
)
@click.option(
    "--max-jobs",
    default=_LIMITS.max_running_jobs,
    show_default=True,
    type=click.IntRange(min=0),
    help="Running jobs over all users (0: no limit).",
)
@click.option(
    "--max-output-bytes",
    default=_LIMITS.max_output_bytes,
    show_default=True,
    type=click.IntRange(min=0),
    help="Output bytes kept per job; beyond it output is discarded, the start kept (0: no limit).",
)
@click.option(
    "--max-finished-per-user",
    default=_LIMITS.max_finished_jobs_per_owner,
    show_default=True,
    type=click.IntRange(min=0),
    help="Finished jobs kept per user; past it the oldest is removed, record and log (0: none).",
)
@click.option(
    "--max-streams",
    default=config_default("max_streams"),
    show_default=True,
    type=click.IntRange(min=1),
    help="Output streams open at once, over all clients.",
)
@click.option(
    "--max-streams-per-user",
    default=config_default("max_streams_per_user"),
    show_default=True,
    type=click.IntRange(min=1),
    help="Output streams one user may have open at once.",
)
@click.option(
    "--max-connections",
    default=config_default("max_connections"),
    show_default=True,
    type=click.IntRange(min=1),
    help="Client connections open at once, TLS handshakes in progress included.",
)
@click.option(
    "--max-handshakes",
    default=config_default("max_handshakes"),
    show_default=True,
    type=click.IntRange(min=1),
    help="TLS handshakes in progress at once; past it a new one replaces the oldest.",
)
@click.option(
    "--max-connections-per-user",
    default=config_default("max_connections_per_user"),
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections one user (certificate name) may have open at once.",
)
@click.option(
    "--retain",
    default="7d",
    show_default=True,
    type=DURATION,
    help="How long a finished job's record and output are kept after it ended: 30s, 15m, 12h, "
    "7d, or forever (docs/retention.md). `jobctl rm` removes one sooner.",
)
@click.option(
    "--user-quota",
    default="0",
    show_default=True,
    type=BYTES,
    help="Output bytes on disk per user (e.g. 10G; 0: no quota). When new output would pass it, "
    "the user's oldest finished jobs are removed first; only if the running jobs alone pass "
    "it is their output cut (marked truncated).",
)
@click.option(
    "--no-store",
    is_flag=True,
    hidden=True,
    help="Keep job records in memory only (benchmarks compare the start rate without the store).",
)
@confine_options
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="Serve Prometheus metrics over plain HTTP here, e.g. 127.0.0.1:9464 (off by default; "
    "keep it on loopback: metrics have no authentication).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object per line with the audit fields as keys.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@config_option
def serve(
    *,
    listen: str,
    ca: Path,
    cert: Path,
    key: Path,
    crl: Path | None,
    policy: Path | None,
    data_dir: Path | None,
    stop_grace: float,
    handshake_timeout: float,
    idle_timeout: float,
    request_timeout: float,
    max_jobs_per_user: int,
    max_jobs: int,
    max_output_bytes: int,
    max_finished_per_user: int,
    max_streams: int,
    max_streams_per_user: int,
    max_connections: int,
    max_handshakes: int,
    max_connections_per_user: int,
    retain: float | None,
    user_quota: int,
    no_store: bool,
    confine: str,
    cgroup_root: Path | None,
    metrics_listen: str | None,
    log_format: str,
    verbose: bool,
    nats: str | None = None,
    replicas: int = 3,
    nats_cert: Path | None = None,
    nats_key: Path | None = None,
    **limit_options: Any,
) -> None:
    """Serve the job API over mutual TLS until SIGTERM or SIGINT.

    Every client must present a certificate issued by --ca (and not revoked by --crl); its CN
    is the user, authorized by --policy. Each call is logged to stderr as an audit line. On
    SIGHUP the server reads --policy, --ca, --cert, --key and --crl again: each part is checked
    before it replaces the old one, and nothing in flight is dropped. On SIGTERM or SIGINT the
    server stops accepting, stops running jobs (SIGTERM, --stop-grace, SIGKILL), lets output
    streams end with their job's final status, and exits 0.

    Every flag can also come from a TOML file (--config; see docs/operations.md).

    \b
    Examples:
      jobd serve --ca pki/ca.pem --cert pki/server.pem --key pki/server.key
      jobd serve --config /etc/jobd/jobd.toml --metrics-listen 127.0.0.1:9464
      jobd serve --listen 127.0.0.1:50051 --policy /etc/jobd/policy.toml \\
          --data-dir /var/lib/jobd --ca ca.pem --cert server.pem --key server.key
    """
    configure_logging(verbose, log_format)
    quiet_data_frame_repr()
    host, port = parse_listen(listen, "--listen")
    data_dir = data_dir or default_data_dir()
    the_policy = _load_policy(policy)
    preflight.check_server_certificate(ca, cert, key)
    preflight.warn_about_exposure(key)
    # Before the cgroups and the store: a second jobd must not touch the first's (nor "recover"
    # its running jobs as crashed ones).
    lock = preflight.lock_data_dir(data_dir)  # held until jobd exits
    confinement, jobs = confinement_from(confine, data_dir, cgroup_root, limit_options, the_policy)
    config = ServerConfig(
        host=host,
        port=port,
        ca=ca,
        cert=cert,
        key=key,
        data_dir=data_dir,
        policy=the_policy,
        policy_file=policy,
        crl=crl,
        metrics_address=_metrics_address(metrics_listen),
        stop_grace=stop_grace,
        handshake_timeout=handshake_timeout,
        idle_timeout=idle_timeout,
        request_timeout=request_timeout,
        limits=Limits(
            max_running_jobs_per_owner=max_jobs_per_user,
            max_running_jobs=max_jobs,
            max_output_bytes=max_output_bytes,
            max_finished_jobs_per_owner=max_finished_per_user,
        ),
        retention=Retention(keep_for=retain, owner_quota=user_quota),
        max_streams=max_streams,
        max_streams_per_user=max_streams_per_user,
        max_connections=max_connections,
        max_handshakes=max_handshakes,
        max_connections_per_user=max_connections_per_user,
        confinement=confinement,
        jobs=jobs,
    )
    _ensure_fd_limit(fds_needed(config))
    announce = announcer()
    check_key_files(config.key, config.ca)
    try:
        if nats is not None:
            # A front: stateless, so no job store; jobs and their records live in the cluster.
            settings = _nats_settings(nats, replicas, ca, nats_cert, nats_key)
            asyncio.run(_serve_cluster(config, settings, announce))
        else:
            store = None if no_store else _open_store(config.data_dir)
            make_private(config.data_dir)
            asyncio.run(_serve(config, store, announce))
    finally:
        confinement.close()  # also when jobd did not get as far as running a job
        os.close(lock)


def _nats_settings(
    nats: str, replicas: int, ca: Path, cert: Path | None, key: Path | None
) -> NatsSettings:
    if cert is None or key is None:
        raise click.UsageError("--nats needs --nats-cert and --nats-key (a front's)")
    from jobservice.cluster.connect import NatsSettings  # noqa: PLC0415 (nats-py on use)

    try:
        servers = NatsSettings.parse_servers(nats)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--nats") from None
    return NatsSettings(servers, ca, cert, key, replicas)


def fds_needed(config: ServerConfig) -> int:
    """File descriptors the configured limits may use at once (unlimited jobs count as 1024)."""
    jobs = config.limits.max_running_jobs or _LIMITS.max_running_jobs
    return _FDS_BASE + config.max_connections + config.max_streams + _FDS_PER_JOB * jobs


def _ensure_fd_limit(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE to `needed` if it is lower and the hard limit allows.

    Only as far as needed, not to the hard limit: jobs inherit it, and some programs misbehave
    with a huge one. Below `needed`, jobd still runs, and a call that finds no descriptor free
    is answered RESOURCE_EXHAUSTED; the warning says which limit to raise.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit: %s", exc)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "file descriptor limit %d is below the %d the configured limits may need "
            "(--max-connections, --max-streams, --max-jobs); raise it (ulimit -n) or lower them",
            soft,
            needed,
        )


def _metrics_address(text: str | None) -> tuple[str, int] | None:
    return parse_listen(text, "--metrics-listen") if text else None


def parse_listen(text: str, flag: str) -> tuple[str, int]:
    try:
        return parse_address(text, allow_port_zero=True)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


Announce = Callable[..., None]


def announcer() -> Announce:
    """How jobd says where it listens: a log record, timestamped as every line, whose fields a
    JSON log (--log-format json) writes as keys of their own."""

    def announce(text: str, **fields: object) -> None:
        log.info("%s", text, extra={LOG_FIELDS: fields})

    return announce


def _load_policy(path: Path | None) -> Policy:
    if path is None:
        return Policy.default()
    try:
        return Policy.load(path)
    except PolicyError as exc:
        raise click.ClickException(f"invalid policy: {exc}") from None


def _open_store(data_dir: Path) -> JobStore:
    """The job records under `data_dir`, or a clear refusal to start (nothing is changed)."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return SqliteStore(data_dir)
    except StoreError as exc:
        raise click.ClickException(f"refusing to start: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot use data directory {data_dir}: {exc}") from None


async def _serve(
    config: ServerConfig,
    store: JobStore | None,
    announce: Announce,
) -> None:
    """Start, announce the address, wait for a signal, shut down."""
    try:
        server = JobServer(config, store=store)
    except TLSPolicyError as exc:
        raise click.ClickException(f"refusing to start: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot use data directory {config.data_dir}: {exc}") from None
    await _run_until_signalled(server, config, announce, "stopping running jobs and ending streams")
    log.info("stopped")


async def _run_until_signalled(
    server: JobServer, config: ServerConfig, announce: Announce, shutdown: str
) -> None:
    """Metrics, listen, announce the address, serve until SIGTERM/SIGINT, then shut down.

    SIGHUP reloads (it takes over the hang-up handler _stop_on_signals set).
    """
    if config.metrics_address is not None:
        serve_metrics(server.serve_metrics, config.metrics_address, announce)
    try:
        host, port = await server.start()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
        raise click.ClickException(
            f"cannot listen on {format_address(config.host, config.port)}: {reason}"
        ) from None
    stop = _stop_on_signals()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload, server)
    address = format_address(host, port)
    announce(f"jobd listening on {address}", address=address)
    await stop.wait()
    log.info("shutting down: %s", shutdown)
    await server.shutdown()


def on_hangup() -> None:
    """SIGHUP: log it and keep serving, as a daemon should (closing a terminal sends one).

    The one place SIGHUP is handled, so that a reload can take it over. Running jobs are never
    affected: each is in its own session, away from jobd's terminal.
    """
    log.warning("received SIGHUP: ignored, jobd keeps running (stop it with SIGTERM)")


def serve_metrics(
    serve: Callable[[], tuple[str, int]], at: tuple[str, int], announce: Announce
) -> None:
    """Serve the metrics (`serve()`, on `at`) and say where; before any job can start."""
    try:
        host, port = serve()
    except OSError as exc:
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else str(exc)
        raise click.ClickException(
            f"cannot serve metrics on {format_address(*at)}: {reason}"
        ) from None
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        log.warning(
            "metrics are served on %s, not on loopback: plain HTTP, without authentication",
            format_address(host, port),
        )
    url = f"http://{format_address(host, port)}/metrics"
    announce(f"jobd metrics on {url}", metrics=url)


def _reload(server: JobServer) -> None:
    log.info("received SIGHUP: reloading the policy and the TLS material")
    server.reload()


def _stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT; a second exits at once. SIGHUP: on_hangup."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: exiting without a clean shutdown", signal.Signals(signum).name)
            os._exit(1)
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    return stop


async def _serve_cluster(config: ServerConfig, cluster: NatsSettings, announce: Announce) -> None:
    """`jobd serve --nats`: the same server over a cluster front instead of a coordinator."""
    from jobservice.cluster.connect import connect  # noqa: PLC0415
    from jobservice.cluster.errors import ClusterError  # noqa: PLC0415
    from jobservice.cluster.front import ClusterFront  # noqa: PLC0415
    from jobservice.cluster.layout import front_inbox  # noqa: PLC0415

    try:
        nc = await connect(cluster, "jobd front", front_inbox())
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from None
    front = ClusterFront(
        nc,
        replicas=cluster.replicas,
        stop_grace=config.stop_grace,
        limits=config.limits,
        retention=config.retention,
    )
    # The agents confine jobs (or refuse limits they cannot apply), not this host: the front
    # only completes a request's limits with the policy's defaults and checks its maxima.
    config = dataclasses.replace(config, jobs=dataclasses.replace(config.jobs, confined=True))
    await front.open()
    try:
        server = JobServer(config, backend=front, directory=front)
    except TLSPolicyError as exc:
        raise click.ClickException(f"refusing to start: {exc}") from None
    await _run_until_signalled(
        server, config, announce, "ending streams (jobs keep running on their agents)"
    )
    # Not drain(): it waits on nats-py's fetch queues, which are never marked done. Everything
    # this process must publish was acknowledged already.
    await nc.close()
    log.info("stopped")
