"""A development PKI: one CA, a loopback server certificate and one client certificate per user.

Everything is ECDSA over P-384 signed with SHA-384, matching the TLS policy. ``init_pki`` is
what ``jobd pki init`` runs; the lower-level functions (``create_ca``, ``issue_certificate``)
let tests mint deliberately bad certificates: expired, not yet valid, wrong purpose, from a
second CA, on another curve.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jobservice.security.errors import PKIError

__all__ = [
    "CLIENT_AUTH",
    "SERVER_AUTH",
    "SERVER_HOSTS",
    "CertifiedKey",
    "add_server",
    "add_users",
    "create_ca",
    "init_pki",
    "issue_certificate",
    "load_certified_key",
    "new_key",
    "validate_user_name",
    "write_certificate",
    "write_private_key",
]

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
SERVER_HOSTS = ("localhost", "127.0.0.1", "::1")
# Where `init_pki` puts the CA key, under its output directory: a directory of its own (0700), so
# that the files a server or a user needs can be copied from the output without taking along
# the key that mints any identity. Move it off the server host.
CA_KEY = Path("ca-private") / "ca.key"

# Backdating covers small clock differences between the machine that issues and the peers.
_BACKDATE = timedelta(minutes=5)
# A user name is a CN and a file name stem: letters, digits and . _ @ - with no leading dot.
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# A server name: a DNS name or an IPv4/IPv6 address (ipaddress checks the latter in hosts).
_HOST_NAME = re.compile(r"[A-Za-z0-9.:-]{1,253}")
# These stems are taken by the CA and server files in the same directory.
_RESERVED_NAMES = frozenset({"ca", "server"})


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        """The certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert: Path, key: Path) -> None:
        """Write the certificate (0644) and the key (0600); neither file may exist yet."""
        write_private_key(key, self)
        write_certificate(cert, self)


def init_pki(out: Path, users: Sequence[str], *, days: int = 365, overwrite: bool = False) -> None:
    """Write ca.pem, server.pem, server.key and NAME.pem, NAME.key for each user, and the CA's
    key apart, in `CA_KEY` (ca-private/ca.key)."""
    names = list(dict.fromkeys(users))  # a repeated --user is harmless: issue it once
    for name in names:
        validate_user_name(name)
    out = Path(out)
    stems = ["server", *names]
    targets = [out / "ca.pem", out / CA_KEY]
    targets += [out / f"{stem}.{ext}" for stem in stems for ext in ("pem", "key")]
    _check_targets(targets, overwrite=overwrite)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    (out / CA_KEY).parent.mkdir(mode=0o700, exist_ok=True)
    for path in targets:
        path.unlink(missing_ok=True)  # only reached with overwrite=True or absent files
    ca = create_ca(days=days)
    ca.write(out / "ca.pem", out / CA_KEY)
    server = issue_certificate(
        ca, "localhost", extended_key_usage=(SERVER_AUTH,), hosts=SERVER_HOSTS, days=days
    )
    server.write(out / "server.pem", out / "server.key")
    for name in names:
        issue_certificate(ca, name, days=days).write(out / f"{name}.pem", out / f"{name}.key")


def ca_key_path(out: Path) -> Path:
    """Where the CA key of the PKI in `out` is: `CA_KEY`, or ca.key beside ca.pem (older)."""
    apart = Path(out) / CA_KEY
    return apart if apart.exists() else Path(out) / "ca.key"


def add_users(out: Path, users: Sequence[str], *, days: int = 365) -> None:
    """Issue NAME.pem, NAME.key for each user from the CA in `out` (ca.pem, `CA_KEY`)."""
    names = list(dict.fromkeys(users))
    for name in names:
        validate_user_name(name)
    out = Path(out)
    ca = load_certified_key(out / "ca.pem", ca_key_path(out))
    _check_targets([out / f"{name}.{ext}" for name in names for ext in ("pem", "key")])
    for name in names:
        issue_certificate(ca, name, days=days).write(out / f"{name}.pem", out / f"{name}.key")


def add_server(out: Path, hosts: Sequence[str], *, days: int = 365) -> tuple[Path, Path]:
    """Issue a server certificate for `hosts` (DNS names or IP addresses) from the CA in `out`.

    Written as server-HOST.pem and server-HOST.key after the first host; returns their paths.
    """
    if not hosts:
        raise PKIError("a server certificate needs at least one name")
    for host in hosts:
        if not _HOST_NAME.fullmatch(host):
            raise PKIError(f"invalid server name {host!r}: a DNS name or an IP address")
    out = Path(out)
    ca = load_certified_key(out / "ca.pem", ca_key_path(out))
    stem = "server-" + hosts[0].replace(":", "_")
    cert, key = out / f"{stem}.pem", out / f"{stem}.key"
    _check_targets([cert, key])
    subject = _name(hosts[0])
    issue_certificate(
        ca, hosts[0], extended_key_usage=(SERVER_AUTH,), hosts=hosts, days=days, subject=subject
    ).write(cert, key)
    return cert, key


def validate_user_name(name: str) -> str:
    """Return ``name`` if it can be a user's CN and file name, else raise PKIError."""
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name):
        raise PKIError(
            f"invalid user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "not starting with '.', '_', '@' or '-'"
        )
    if name.lower() in _RESERVED_NAMES:
        raise PKIError(f"invalid user name {name!r}: {name}.pem would clash with the PKI's own")
    return name


def new_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA private key, on P-384 unless a curve is given."""
    return ec.generate_private_key(curve if curve is not None else ec.SECP384R1())


def create_ca(
    name: str | None = None,
    *,
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertifiedKey:
    """A self-signed CA that may sign end-entity certificates only (pathlen 0)."""
    key = new_key()
    # A random tag keeps two development CAs apart by name as well as by key.
    subject = _name(name or f"jobservice development CA {secrets.token_hex(4)}")
    start, end = _validity(days, not_before, not_after)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )
    return CertifiedKey(certificate, key)


def issue_certificate(
    issuer: CertifiedKey,
    name: str,
    *,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = (CLIENT_AUTH,),
    hosts: Sequence[str] = (),
    days: int = 365,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    subject: x509.Name | None = None,
) -> CertifiedKey:
    """An end-entity certificate signed by ``issuer``.

    ``name`` becomes the only CN (validated as a user name) unless ``subject`` is given, which
    is used as is. ``extended_key_usage=None`` omits the extension (any purpose). ``hosts``
    become DNS or IP subject alternative names.
    """
    if subject is None:
        subject = _name(validate_user_name(name))
    key = key if key is not None else new_key()
    start, end = _validity(days, not_before, not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    if extended_key_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_key_usage), False)
    if hosts:
        builder = builder.add_extension(_subject_alt_names(hosts), critical=False)
    return CertifiedKey(builder.sign(issuer.key, hashes.SHA384()), key)


def load_certified_key(cert: Path, key: Path) -> CertifiedKey:
    """Read back a certificate and its EC private key, e.g. a CA to issue more users from."""
    try:
        certificate = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        private_key = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise PKIError(f"cannot load certificate {cert} with key {key}: {exc}") from exc
    if not isinstance(private_key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"key file {key} is not an ECDSA key")
    if private_key.public_key() != certificate.public_key():
        raise PKIError(f"key file {key} does not match certificate file {cert}")
    return CertifiedKey(certificate, private_key)


def write_private_key(path: Path, certified: CertifiedKey) -> None:
    """Create ``path`` with mode 0600 from the start, so the key is never readable by others."""
    _write_new(Path(path), certified.key_pem(), 0o600)


def write_certificate(path: Path, certified: CertifiedKey) -> None:
    """Create ``path`` (mode 0644) holding the certificate."""
    _write_new(Path(path), certified.cert_pem(), 0o644)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet; O_EXCL means no existing mode or link is reused."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError as exc:
        raise PKIError(f"{path} already exists; refusing to overwrite it") from exc
    except OSError as exc:
        raise PKIError(f"cannot create {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _check_targets(targets: Sequence[Path], *, overwrite: bool = False) -> None:
    """Refuse, before writing anything, to replace an existing PKI unless asked to."""
    existing = [str(p) for p in targets if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise PKIError(f"refusing to overwrite existing PKI files ({', '.join(existing)})")


def _validity(
    days: int, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    """The validity window: backdated a little, ``days`` long unless given explicitly."""
    if days < 1:
        raise PKIError(f"validity must be at least one day, not {days}")
    start = not_before if not_before is not None else datetime.now(UTC) - _BACKDATE
    end = not_after if not_after is not None else start + _BACKDATE + timedelta(days=days)
    if end <= start:
        raise PKIError(f"certificate would expire ({end}) before it starts ({start})")
    return start, end


def _name(common_name: str) -> x509.Name:
    """A subject name with the single CN."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """keyCertSign + cRLSign for a CA; digitalSignature (the TLS 1.3 handshake) otherwise."""
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: CertifiedKey) -> x509.AuthorityKeyIdentifier:
    """The issuer's key identifier, so verifiers pick the right issuer among same-named CAs."""
    try:
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def _subject_alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    """IP address SANs for literal addresses, DNS SANs for everything else."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)
