"""`jobd agent`: run a cluster's jobs on this host until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobservice.cli.jobd.confine import cgroup_options, host_confinement
from jobservice.cli.jobd.logsetup import configure_logging
from jobservice.cli.jobd.serve import (
    _open_store,
    _stop_on_signals,
    announcer,
    default_data_dir,
    nats_options,
    parse_listen,
    serve_metrics,
)
from jobservice.core import Limits
from jobservice.core.confine import Confinement
from jobservice.core.confine.account import Account

if TYPE_CHECKING:
    from jobservice.cluster.connect import NatsSettings

__all__ = ["agent"]

log = logging.getLogger("jobservice.jobd")


@click.command()
@nats_options(required=True)
@click.option(
    "--name",
    required=True,
    metavar="NODE",
    help="This node's name: its certificate is nodes/NODE.pem; `jobctl start --node NODE`.",
)
@click.option(
    "--ca",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The cluster's CA certificate.",
)
@click.option(
    "--cert",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="This node's certificate (jobd pki init --node NODE).",
)
@click.option(
    "--key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="This node's private key.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where job output logs are kept on this host (as for jobd serve).",
)
@click.option(
    "--stop-grace",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between SIGTERM and SIGKILL when a job is stopped.",
)
@click.option(
    "--max-jobs",
    default=Limits().max_running_jobs,
    show_default=True,
    type=click.IntRange(min=0),
    help="Running jobs on this node (0: no limit).",
)
@click.option(
    "--max-jobs-per-user",
    default=Limits().max_running_jobs_per_owner,
    show_default=True,
    type=click.IntRange(min=0),
    help="Running jobs one user may have on this node (0: no limit).",
)
@cgroup_options
@click.option(
    "--run-as",
    metavar="ACCOUNT",
    help="Unix account for jobs whose start names none (no run_as in the front's policy and "
    "no --run-as there). Default: nobody when the agent runs as root; never root itself.",
)
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="Serve this node's job metrics (Prometheus, plain HTTP) here, e.g. 127.0.0.1:9465 "
    "(off by default; keep it on loopback).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def agent(
    *,
    nats: str,
    name: str,
    ca: Path,
    cert: Path,
    key: Path,
    data_dir: Path | None,
    stop_grace: float,
    max_jobs: int,
    max_jobs_per_user: int,
    confine: str,
    cgroup_root: Path | None,
    run_as: str | None,
    metrics_listen: str | None,
    verbose: bool,
) -> None:
    """Run the cluster's jobs on this host: take start requests from NATS, publish output.

    On SIGTERM or SIGINT the agent takes no more starts, stops its running jobs (SIGTERM,
    --stop-grace, SIGKILL), publishes the rest of their output and exits 0.

    \b
    Example:
      jobd agent --nats tls://10.0.0.1:4222,tls://10.0.0.2:4222 --name h1 \\
          --ca pki/ca.pem --cert pki/nodes/h1.pem --key pki/nodes/h1.key
    """
    configure_logging(verbose)
    # Imported here: nats-py is needed by the cluster commands only.
    from jobservice.cluster.connect import NatsSettings  # noqa: PLC0415
    from jobservice.cluster.layout import validate_node_name  # noqa: PLC0415
    from jobservice.core.errors import InvalidRequest  # noqa: PLC0415

    try:
        validate_node_name(name)
        servers = NatsSettings.parse_servers(nats)
    except (InvalidRequest, ValueError) as exc:
        raise click.BadParameter(str(exc)) from None
    settings = NatsSettings(servers, ca, cert, key)
    # Finished jobs stay on this host until their record leaves the cluster: the fronts apply
    # the retention rules (--retain, --user-quota, --max-finished-per-user), once for the cluster.
    limits = Limits(
        max_running_jobs=max_jobs,
        max_running_jobs_per_owner=max_jobs_per_user,
        max_finished_jobs_per_owner=0,
    )
    metrics_at = parse_listen(metrics_listen, "--metrics-listen") if metrics_listen else None
    data_dir = data_dir or default_data_dir()
    default_account = _default_account(run_as)
    # As jobd serve: no_new_privs, then the layout. Limits and run-as come with each start.
    confinement = host_confinement(confine, data_dir, cgroup_root)
    try:
        asyncio.run(
            _run(
                settings,
                name,
                data_dir=data_dir,
                stop_grace=stop_grace,
                limits=limits,
                confinement=confinement,
                metrics_at=metrics_at,
                default_account=default_account,
            )
        )
    finally:
        confinement.close()


async def _run(
    settings: NatsSettings,
    name: str,
    *,
    data_dir: Path,
    stop_grace: float,
    limits: Limits,
    confinement: Confinement,
    metrics_at: tuple[str, int] | None,
    default_account: Account | None,
) -> None:
    from jobservice.api.server import NodeMetrics  # noqa: PLC0415
    from jobservice.cluster.agent import Agent  # noqa: PLC0415
    from jobservice.cluster.connect import connect  # noqa: PLC0415
    from jobservice.cluster.errors import ClusterError  # noqa: PLC0415
    from jobservice.cluster.layout import node_inbox  # noqa: PLC0415
    from jobservice.core.coordinator import JobCoordinator  # noqa: PLC0415

    try:
        nc = await connect(settings, f"jobd agent {name}", node_inbox(name))
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from None
    # The host's own records, as for jobd serve: after a crash the coordinator ends what was left
    # of the jobs it ran (and the agent then marks them Lost in the cluster).
    metrics = NodeMetrics(metrics_at) if metrics_at is not None else None
    coordinator = JobCoordinator(
        data_dir,
        stop_grace=stop_grace,
        limits=limits,
        store=_open_store(data_dir),
        confinement=confinement,
        observer=metrics.jobs if metrics is not None else None,
    )
    if metrics is not None:
        serve_metrics(lambda: metrics.serve(coordinator), metrics.address, announcer())
    node = Agent(nc, coordinator, name, default_account=default_account)
    stop = _stop_on_signals()
    running = asyncio.create_task(node.run())
    ready = asyncio.create_task(node.wait_ready())
    signalled = asyncio.create_task(stop.wait())
    # A signal may come first: the agent waits for a front to create the cluster's streams.
    await asyncio.wait({running, ready, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        await running  # raises what stopped it
    if ready.done():
        click.echo(f"jobd agent {name} ready", err=True)
        await asyncio.wait({running, signalled}, return_when=asyncio.FIRST_COMPLETED)
    log.info("shutting down: stopping running jobs and publishing their output")
    node.stop()
    await running
    # Not drain(): it waits on nats-py's fetch queues, which are never marked done. Everything
    # this process must publish was acknowledged already.
    await nc.close()
    log.info("stopped")


def _default_account(name: str | None) -> Account | None:
    """The account for starts that name none: --run-as, else nobody under root; never root."""
    if os.geteuid() != 0:
        if name:
            log.warning("the agent is not root: --run-as %s is ignored; jobs run as it", name)
        return None  # an unprivileged agent can only run jobs as itself
    try:
        account = Account.lookup(name or "nobody")
    except KeyError:
        raise click.BadParameter(
            f"no account {name!r} on this host", param_hint="--run-as"
        ) from None
    if account.is_root:
        raise click.BadParameter(
            "root would run every unnamed job as root; name root in the front's policy "
            '(run_as = "root") for the users that really need it',
            param_hint="--run-as",
        )
    return account
