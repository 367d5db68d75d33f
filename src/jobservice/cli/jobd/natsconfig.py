"""`jobd nats-config`: write one nats-server's configuration for a jobd cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jobservice.address import parse_address

__all__ = ["nats_config"]


def _address(value: str, option: str) -> tuple[str, int]:
    try:
        return parse_address(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command("nats-config")
@click.option(
    "--pki",
    "pki_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The PKI directory of `jobd pki init --node ... --front ...`.",
)
@click.option("--name", required=True, metavar="NODE", help="The node this server runs on.")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Client address.")
@click.option("--cluster-listen", metavar="HOST:PORT", help="Route address (with --route).")
@click.option(
    "--route", "routes", multiple=True, metavar="HOST:PORT", help="Another server's route address."
)
@click.option(
    "--store",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="JetStream's storage directory.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default stdout)."
)
def nats_config(
    *,
    pki_dir: Path,
    name: str,
    listen: str,
    cluster_listen: str | None,
    routes: tuple[str, ...],
    store: Path,
    out: Path | None,
) -> None:
    """Write the configuration of the nats-server on node NAME of a jobd cluster.

    Its users are every node and front certificate under --pki (nodes/*.pem, fronts/*.pem),
    each allowed only its role's subjects; clients must present one of them over TLS 1.3.

    \b
    Example (three servers on one host):
      jobd nats-config --pki pki --name n1 --listen 127.0.0.1:4301 \\
          --cluster-listen 127.0.0.1:6301 --route 127.0.0.1:6302 --route 127.0.0.1:6303 \\
          --store /var/lib/nats/n1 --out n1.conf && nats-server -c n1.conf
    """
    from jobservice.cluster.natsconf import ServerPlan, server_config  # noqa: PLC0415
    from jobservice.security.errors import PKIError  # noqa: PLC0415

    host, port = _address(listen, "--listen")
    if routes and cluster_listen is None:
        raise click.UsageError("--route needs --cluster-listen")
    cluster_port = _address(cluster_listen, "--cluster-listen")[1] if cluster_listen else 0
    nodes = sorted(p.stem for p in (pki_dir / "nodes").glob("*.pem"))
    fronts = sorted(p.stem for p in (pki_dir / "fronts").glob("*.pem"))
    if name not in nodes:
        raise click.BadParameter(f"no certificate {pki_dir}/nodes/{name}.pem", param_hint="--name")
    plan = ServerPlan(name, host, port, cluster_port, store.resolve())
    try:
        text = server_config(plan, pki=pki_dir, routes=routes, nodes=nodes, fronts=fronts)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
