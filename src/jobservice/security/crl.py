"""Certificate revocation: the CA's signed list of revoked certificates, written and checked.

``revoke`` is what ``jobd pki revoke`` runs: it adds certificates to the CRL (keeping every
entry already there), re-signs it with the CA key and replaces the file atomically. ``load_crl``
is what the server runs, at start and on each reload, before OpenSSL is given the file: the CRL
must be PEM, signed by a CA of the CA file, and not past its next update, since OpenSSL would
otherwise refuse every client (an expired CRL fails every handshake) or none.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from jobservice.security.errors import CredentialError, PKIError
from jobservice.security.pki import CertifiedKey

__all__ = ["DEFAULT_CRL_DAYS", "RevocationList", "load_crl", "revoke"]

# Until its next update a CRL is in force; after it, every client is refused until the CRL is
# re-signed (`jobd pki revoke` with no name does that). A month gives an operator time.
DEFAULT_CRL_DAYS = 30


@dataclass(frozen=True)
class RevocationList:
    """A CRL checked against its CA: the PEM text for OpenSSL and the revoked serial numbers."""

    pem: str
    issuer: x509.Name
    serials: frozenset[int]
    next_update: datetime

    def revokes(self, certificate: x509.Certificate) -> bool:
        """Whether ``certificate`` (issued by this CRL's CA) is on the list."""
        return certificate.issuer == self.issuer and certificate.serial_number in self.serials


def load_crl(path: Path, ca_pem: bytes) -> RevocationList:
    """The CRL in ``path``, verified against the CA certificates in ``ca_pem``.

    Raises CredentialError naming the file: unreadable, not a PEM CRL, signed by no CA of the
    CA file, or past its next update.
    """
    try:
        data = Path(path).read_bytes()
        crl = x509.load_pem_x509_crl(data)
    except OSError as exc:
        raise CredentialError(f"cannot read CRL file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CredentialError(f"CRL file {path} holds no valid PEM CRL") from exc
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise CredentialError("the CA file holds no PEM certificate to check the CRL") from exc
    signers = [ca for ca in cas if ca.subject == crl.issuer]
    if not any(crl.is_signature_valid(ca.public_key()) for ca in signers):  # type: ignore[arg-type]
        raise CredentialError(f"CRL file {path} is not signed by a CA of the CA file")
    next_update = crl.next_update_utc
    if next_update is None or next_update <= datetime.now(UTC):
        raise CredentialError(
            f"CRL file {path} is past its next update ({next_update}); re-sign it "
            "(jobd pki revoke --out DIR with no name)"
        )
    return RevocationList(
        pem=data.decode("ascii"),
        issuer=crl.issuer,
        serials=frozenset(entry.serial_number for entry in crl),
        next_update=next_update,
    )


def revoke(
    ca: CertifiedKey,
    crl_path: Path,
    certificates: Iterable[x509.Certificate],
    *,
    days: int = DEFAULT_CRL_DAYS,
) -> x509.CertificateRevocationList:
    """Add ``certificates`` to the CRL in ``crl_path`` (created if missing), signed by ``ca``.

    Entries already in the file are kept; the CRL number goes up by one on every signature.
    """
    if days < 1:
        raise PKIError(f"a CRL must be valid for at least one day, not {days}")
    previous = _previous(ca, crl_path)
    now = datetime.now(UTC)
    entries = {entry.serial_number: entry for entry in previous or ()}
    for certificate in certificates:
        if certificate.issuer != ca.certificate.subject:
            subject = certificate.subject.rfc4514_string()
            raise PKIError(f"certificate {subject} is not from this CA")
        entries.setdefault(
            certificate.serial_number,
            x509.RevokedCertificateBuilder()
            .serial_number(certificate.serial_number)
            .revocation_date(now)
            .build(),
        )
    number = _crl_number(previous) + 1 if previous is not None else 1
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    for entry in entries.values():
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca.key, hashes.SHA384())
    _replace(crl_path, crl.public_bytes(serialization.Encoding.PEM))
    return crl


def _previous(ca: CertifiedKey, path: Path) -> x509.CertificateRevocationList | None:
    """The CRL already in ``path``, which must be this CA's; None if there is none."""
    try:
        crl = x509.load_pem_x509_crl(Path(path).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PKIError(f"cannot read the existing CRL {path}: {exc}") from exc
    if not crl.is_signature_valid(ca.key.public_key()):
        raise PKIError(f"the existing CRL {path} is not signed by this CA; refusing to replace it")
    return crl


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a CRL."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
