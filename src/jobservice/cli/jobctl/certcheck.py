"""What is wrong with our own certificate, said plainly, when the server refuses the connection.

In TLS 1.3 a server that rejects the client's certificate just closes the connection, so jobctl
cannot tell an expired certificate from a foreign one by what it sees. It can by looking at its
own: validity dates, the clientAuth purpose, and the issuer (the CA file, the one the server's
certificate comes from). Checked only after a refusal: `cryptography` costs a command's cold
start about 25 ms (docs/cli.md, "Cold start"), and a certificate the server accepted needs no
explaining.
"""

# ruff: noqa: PLC0415 (cryptography only on this error path)

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["certificate_problem"]


def certificate_problem(cert: Path, ca: Path, *, now: datetime | None = None) -> str | None:
    """Why a server would refuse `cert`, in a sentence; None when nothing is visibly wrong."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        ours = x509.load_pem_x509_certificate(cert.read_bytes())
        authorities = x509.load_pem_x509_certificates(ca.read_bytes())
    except (OSError, ValueError):
        return None  # unreadable files were reported before any connection was tried
    now = now or datetime.now(UTC)
    if now < ours.not_valid_before_utc:
        return (
            f"your certificate {cert} is not valid until {_when(ours.not_valid_before_utc)} "
            "(is this machine's clock right?)"
        )
    if now > ours.not_valid_after_utc:
        return (
            f"your certificate {cert} expired on {_when(ours.not_valid_after_utc)}; "
            "ask for a new one (jobd pki add-user)"
        )
    try:
        usages = ours.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None  # no restriction: any purpose
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return (
            f"your certificate {cert} is not for client authentication (no clientAuth in its "
            "extended key usage: a server's certificate?); use a user's certificate"
        )
    if not any(_issued_by(ours, authority) for authority in authorities):
        return (
            f"your certificate {cert} is not issued by the CA in {ca}, the one the server's "
            "certificate comes from; use a certificate from the server's CA"
        )
    return None


def _issued_by(cert: x509.Certificate, authority: x509.Certificate) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        cert.verify_directly_issued_by(authority)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
