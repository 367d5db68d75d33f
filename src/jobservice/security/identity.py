"""Who is calling: the user named by the client certificate's one CN, and nothing else."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobservice.security.errors import AuthenticationError

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["Identity", "identity_from_certificate", "identity_from_connection"]


@dataclass(frozen=True)
class Identity:
    """An authenticated caller; ``user`` is the CN of their client certificate."""

    user: str


def identity_from_certificate(der: bytes) -> Identity:
    """The identity in a DER client certificate the TLS layer has already verified.

    The handshake proved the chain; this adds what it cannot: the certificate must be meant
    for client authentication (a server certificate from the same CA is not a user, and a
    certificate without an EKU would otherwise pass as any purpose), and it must name exactly
    one user unambiguously.
    """
    # Imported here: `cryptography.x509` is ~9 MiB of jobd's resident memory, and an idle
    # server (or a jobctl that is not checking --user) need not carry it.
    from cryptography import x509  # noqa: PLC0415

    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise AuthenticationError("the client certificate cannot be parsed") from exc
    _require_client_auth(certificate)
    return Identity(user=_single_common_name(certificate))


def identity_from_connection(ssl_obj: ssl.SSLObject | ssl.SSLSocket) -> Identity:
    """The identity of the peer on a server-side TLS connection after its handshake."""
    der = ssl_obj.getpeercert(binary_form=True)
    if not der:
        raise AuthenticationError("the client presented no certificate")
    return identity_from_certificate(der)


def _require_client_auth(certificate: x509.Certificate) -> None:
    """Refuse certificates whose extended key usage does not include clientAuth."""
    from cryptography import x509  # noqa: PLC0415 (see identity_from_certificate)
    from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: PLC0415

    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise AuthenticationError("the client certificate has no extended key usage") from exc
    except ValueError as exc:  # a malformed or duplicated extension
        raise AuthenticationError("the client certificate's extensions are malformed") from exc
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise AuthenticationError("the certificate is not issued for client authentication")


def _single_common_name(certificate: x509.Certificate) -> str:
    """The subject's only CN, which must be a non-empty printable string."""
    from cryptography.x509.oid import NameOID  # noqa: PLC0415 (see identity_from_certificate)

    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise AuthenticationError(
            f"the client certificate must have exactly one common name, not {len(names)}"
        )
    value = names[0].value
    if not isinstance(value, str) or not value:
        raise AuthenticationError("the client certificate's common name is empty")
    # Control characters or padding could make one user look like another in logs and policy.
    if not value.isprintable() or value != value.strip():
        raise AuthenticationError(
            f"the client certificate's common name {value!r} has unprintable characters"
            " or surrounding spaces"
        )
    return value
