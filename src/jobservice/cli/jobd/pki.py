"""`jobd pki init`: write a development PKI (CA, server and user certificates)."""

from __future__ import annotations

from pathlib import Path

import click

from jobservice.security.errors import PKIError

__all__ = ["pki"]


@click.group()
def pki() -> None:
    """Development certificates (for production, keep the CA key off the server host)."""


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
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing PKI, CA included: every certificate it issued stops working.",
)
def init(
    *,
    out: Path,
    users: tuple[str, ...],
    nodes: tuple[str, ...],
    fronts: tuple[str, ...],
    days: int,
    force: bool,
) -> None:
    """Write ca.pem, server.pem/server.key and NAME.pem/NAME.key for each --user, and the CA
    key apart, in ca-private/ca.key.

    Keys are ECDSA P-384 and written mode 0600; certificates are signed with SHA-384. The
    server certificate is valid for localhost, 127.0.0.1 and ::1. jobd serve needs ca.pem,
    server.pem and server.key only: whoever holds ca.key can mint any identity, so move it off
    the server host.

    \b
    Example:
      jobd pki init --out ./pki --user alice --user bob --user charlie
      jobd pki init --out ./pki --user alice --node h1 --node h2 --node h3 --front f1
    """
    # Imported here, not at the top: it brings `cryptography` (~9 MiB), which `jobd serve`
    # does not otherwise load.
    from jobservice.security.pki import CA_KEY, init_pki  # noqa: PLC0415

    try:
        init_pki(out, users, days=days, overwrite=force)
        if nodes or fronts:
            _issue_cluster(out, nodes, fronts, days=days, overwrite=force)
    except PKIError as exc:
        hint = ""
        if "refusing to overwrite" in str(exc):
            hint = (
                f"; to add users to this PKI: jobd pki add-user --out {out} NAME...; to start "
                "over with a new CA (every certificate of the old one stops working): --force"
            )
        raise click.ClickException(f"{exc}{hint}") from None
    click.echo(f"wrote a development PKI to {out} ({', '.join(('ca', 'server', *users))})")
    click.echo(
        f"warning: the CA key is in {out / CA_KEY}: whoever holds it can mint any identity; "
        "move it off the server host (jobd serve needs ca.pem, server.pem and server.key only)",
        err=True,
    )


def _issue_cluster(
    out: Path, nodes: tuple[str, ...], fronts: tuple[str, ...], *, days: int, overwrite: bool
) -> None:
    """Node and front certificates from the CA just written (docs/cluster.md)."""
    from jobservice.security import cluster_pki  # noqa: PLC0415
    from jobservice.security.pki import CA_KEY, load_certified_key  # noqa: PLC0415

    ca = load_certified_key(out / "ca.pem", out / CA_KEY)
    for paths in [cluster_pki.node_paths(out, n) for n in nodes] + [
        cluster_pki.front_paths(out, f) for f in fronts
    ]:
        for path in paths:
            if path.exists() and not overwrite:
                raise PKIError(f"{path} exists (use --force to overwrite)")
            path.unlink(missing_ok=True)
    cluster_pki.issue_cluster_certificates(ca, out, nodes, fronts, days=days)


_OUT = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The PKI's directory, with ca.pem and ca-private/ca.key (from `jobd pki init`).",
)
_DAYS = click.option("--days", default=365, show_default=True, help="Validity.")


@pki.command("add-user")
@_OUT
@_DAYS
@click.argument("users", nargs=-1, required=True, metavar="NAME...")
def add_user(out: Path, days: int, users: tuple[str, ...]) -> None:
    """Issue NAME.pem/NAME.key for each NAME from the PKI's CA; nothing else changes.

    \b
    Example:
      jobd pki add-user --out ./pki dana erin
    """
    from jobservice.security.pki import add_users  # noqa: PLC0415 (see init)

    try:
        add_users(out, users, days=days)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added to the PKI in {out}: {', '.join(users)}")


@pki.command("add-server")
@_OUT
@_DAYS
@click.option(
    "--name",
    "names",
    multiple=True,
    required=True,
    metavar="HOST",
    help="A DNS name or IP address clients will dial; repeat for more.",
)
def add_server(out: Path, days: int, names: tuple[str, ...]) -> None:
    """Issue a server certificate for other names (server-HOST.pem/.key) from the PKI's CA.

    Clients check that the name they dial (-s HOST:PORT) is one the server's certificate is
    for; `jobd pki init` makes one for localhost, 127.0.0.1 and ::1 only.

    \b
    Example:
      jobd pki add-server --out ./pki --name jobs.example.com --name 10.0.0.5
      jobd serve --cert ./pki/server-jobs.example.com.pem \\
          --key ./pki/server-jobs.example.com.key --ca ./pki/ca.pem ...
    """
    from jobservice.security.pki import add_server as issue  # noqa: PLC0415 (see init)

    try:
        cert, key = issue(out, names, days=days)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {cert} and {key} (for {', '.join(names)})")


@pki.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The PKI directory: NAME.pem is read from it, crl.pem written into it.",
)
@click.option(
    "--ca-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The CA's private key.  [default: OUT/ca-private/ca.key, else OUT/ca.key]",
)
@click.option(
    "--crl",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The CRL to update (created if missing).  [default: OUT/crl.pem]",
)
@click.option(
    "--days",
    default=30,
    show_default=True,
    type=click.IntRange(min=1),
    help="Days until the CRL's next update; after it, jobd refuses every client.",
)
@click.argument("names", nargs=-1, metavar="[NAME]...")
def revoke(
    out: Path, ca_key: Path | None, crl: Path | None, days: int, names: tuple[str, ...]
) -> None:
    """Revoke users' certificates: add OUT/NAME.pem to the CRL, signed with the CA key.

    Entries already in the CRL are kept; with no NAME the CRL is only signed again with a new
    next update. jobd refuses a revoked certificate at the handshake once it runs with
    --crl OUT/crl.pem and has read the new file (at start, or on SIGHUP, which also closes the
    revoked user's open connections).

    \b
    Example:
      jobd pki revoke --out ./pki bob && kill -HUP "$(pidof jobd)"
    """
    from cryptography import x509  # noqa: PLC0415 (as in init)

    from jobservice.security.crl import revoke as revoke_certificates  # noqa: PLC0415
    from jobservice.security.pki import load_certified_key  # noqa: PLC0415

    try:
        ca = load_certified_key(out / "ca.pem", ca_key or _ca_key(out))
        certificates = []
        for name in dict.fromkeys(names):
            path = out / f"{name}.pem"
            try:
                certificates.append(x509.load_pem_x509_certificate(path.read_bytes()))
            except (OSError, ValueError) as exc:
                raise PKIError(f"cannot read the certificate of {name!r} ({path}): {exc}") from exc
        target = crl or out / "crl.pem"
        result = revoke_certificates(ca, target, certificates, days=days)
    except PKIError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"{target}: {len(result)} revoked certificate(s), next update "
        f"{result.next_update_utc:%Y-%m-%d %H:%M} UTC"
    )


def _ca_key(out: Path) -> Path:
    """The CA key of the PKI in `out`: in a directory of its own, or beside the certificates."""
    apart = out / "ca-private" / "ca.key"
    return apart if apart.exists() else out / "ca.key"
