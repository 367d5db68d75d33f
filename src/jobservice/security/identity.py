"""Who is calling: the user named by the client certificate's one CN, and nothing else."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobservice.security.errors import AuthenticationError

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["Identity", "common_name_tag", "identity_from_certificate", "identity_from_connection"]

_ECDSA_WITH_SHA384 = "1.2.840.10045.4.3.3"
_CN_OID = b"\x06\x03\x55\x04\x03"  # DER of 2.5.4.3 (commonName)
_TEXT_TAGS = (0x0C, 0x13)  # UTF8String, PrintableString


@dataclass(frozen=True)
class Identity:
    """An authenticated caller; ``user`` is the CN of their client certificate."""

    user: str


def identity_from_certificate(der: bytes) -> Identity:
    """The identity in a DER client certificate the TLS layer has already verified.

    The handshake proved the chain; this adds what it cannot: the certificate must be meant
    for client authentication (a server certificate from the same CA is not a user, and a
    certificate without an EKU would otherwise pass as any purpose), be an end entity (CA:FALSE:
    a CA certificate is not a user), be signed with ecdsa-with-SHA384 as the PKI signs, and name
    exactly one user unambiguously, in a UTF8String or PrintableString (BMPString, T61String
    and the like decode ambiguously from one library to the next).
    These need the CA's key to get past; they are defence in depth, not the first line.
    """
    # Imported here: `cryptography.x509` is ~9 MiB of jobd's resident memory, and an idle
    # server (or a jobctl that is not checking --user) need not carry it.
    from cryptography import x509  # noqa: PLC0415

    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise AuthenticationError("the client certificate cannot be parsed") from exc
    _require_client_auth(certificate)
    _require_end_entity(certificate)
    if certificate.signature_algorithm_oid.dotted_string != _ECDSA_WITH_SHA384:
        raise AuthenticationError("the client certificate is not signed with ecdsa-with-SHA384")
    user = _single_common_name(certificate)
    if common_name_tag(certificate.subject.public_bytes()) not in _TEXT_TAGS:
        raise AuthenticationError(
            "the client certificate's common name is not a UTF8String or PrintableString"
        )
    return Identity(user=user)


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


def _require_end_entity(certificate: x509.Certificate) -> None:
    """Refuse CA certificates and those that do not say (no basicConstraints)."""
    from cryptography import x509  # noqa: PLC0415 (see identity_from_certificate)

    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise AuthenticationError("the client certificate has no basic constraints") from exc
    except ValueError as exc:
        raise AuthenticationError("the client certificate's extensions are malformed") from exc
    if constraints.ca:
        raise AuthenticationError("the client certificate is a CA certificate (CA:TRUE)")


def common_name_tag(name: bytes) -> int | None:
    """The ASN.1 string tag of the first CN in a DER Name (None if there is none).

    `cryptography` decodes every string type to `str` and keeps the tag private; walking the
    Name's few levels of DER (SEQUENCE OF SET OF SEQUENCE {OID, value}) needs no more.
    """
    _, at, end = _element(name, 0)
    while at < end:
        _, rdn, rdn_end = _element(name, at)
        while rdn < rdn_end:
            _, oid, atv_end = _element(name, rdn)
            _, _, oid_end = _element(name, oid)
            if name[oid:oid_end] == _CN_OID:
                return _element(name, oid_end)[0]
            rdn = atv_end
        at = rdn_end
    return None


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start, end) of the value of the DER element at `at` (from a parsed certificate)."""
    tag, first = der[at], der[at + 1]
    at += 2
    if first & 0x80:
        size = first & 0x7F
        length = int.from_bytes(der[at : at + size], "big")
        at += size
    else:
        length = first
    return tag, at, at + length


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
