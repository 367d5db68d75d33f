"""`jobd pki init`: write a development PKI (CA, server and user certificates)."""

from __future__ import annotations

from pathlib import Path

import click

from jobservice.security.errors import PKIError

__all__ = ["pki"]


@click.group()
def pki() -> None:
    """Development certificates (not for production: the CA key sits next to the certificates)."""


@pki.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory to write into (created mode 0700 if missing).",
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME",
    help="A user to issue a client certificate for (CN = NAME); repeat for more.",
)
@click.option(
    "--node",
    "nodes",
    multiple=True,
    metavar="NAME",
    help="A cluster node (nats-server + agent host): nodes/NAME.pem, serverAuth + clientAuth.",
)
@click.option(
    "--front",
    "fronts",
    multiple=True,
    metavar="NAME",
    help="A cluster front (jobd serve --nats): fronts/NAME.pem, clientAuth.",
)
@click.option("--days", default=365, show_default=True, help="Validity of every certificate.")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(
    *,
    out: Path,
    users: tuple[str, ...],
    nodes: tuple[str, ...],
    fronts: tuple[str, ...],
    days: int,
    force: bool,
) -> None:
    """Write ca.pem/ca.key, server.pem/server.key and NAME.pem/NAME.key for each --user.

    Keys are ECDSA P-384 and written mode 0600; certificates are signed with SHA-384. The
    server certificate is valid for localhost, 127.0.0.1 and ::1.

    \b
    Example:
      jobd pki init --out ./pki --user alice --user bob --user charlie
      jobd pki init --out ./pki --user alice --node h1 --node h2 --node h3 --front f1
    """
    # Imported here, not at the top: it brings `cryptography` (~9 MiB), which `jobd serve`
    # does not otherwise load.
    from jobservice.security.pki import init_pki  # noqa: PLC0415

    try:
        init_pki(out, users, days=days, overwrite=force)
        if nodes or fronts:
            _issue_cluster(out, nodes, fronts, days=days, overwrite=force)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote a development PKI to {out} ({', '.join(('ca', 'server', *users))})")


def _issue_cluster(
    out: Path, nodes: tuple[str, ...], fronts: tuple[str, ...], *, days: int, overwrite: bool
) -> None:
    """Node and front certificates from the CA just written (docs/cluster.md)."""
    from jobservice.security import cluster_pki  # noqa: PLC0415
    from jobservice.security.pki import load_certified_key  # noqa: PLC0415

    ca = load_certified_key(out / "ca.pem", out / "ca.key")
    for paths in [cluster_pki.node_paths(out, n) for n in nodes] + [
        cluster_pki.front_paths(out, f) for f in fronts
    ]:
        for path in paths:
            if path.exists() and not overwrite:
                raise PKIError(f"{path} exists (use --force to overwrite)")
            path.unlink(missing_ok=True)
    cluster_pki.issue_cluster_certificates(ca, out, nodes, fronts, days=days)
