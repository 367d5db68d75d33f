"""The caller's identity: the one printable CN of a certificate issued for client auth."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from jobservice.security import pki
from jobservice.security.errors import AuthenticationError
from jobservice.security.identity import Identity, identity_from_certificate


@pytest.fixture(scope="module")
def ca() -> pki.CertifiedKey:
    return pki.create_ca("identity test CA")


def _der(certified: pki.CertifiedKey) -> bytes:
    return certified.certificate.public_bytes(serialization.Encoding.DER)


def _with_subject(ca: pki.CertifiedKey, *attributes: tuple[x509.ObjectIdentifier, str]) -> bytes:
    subject = x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])
    return _der(pki.issue_certificate(ca, "unused", subject=subject))


def test_identity_is_the_common_name(ca: pki.CertifiedKey) -> None:
    assert identity_from_certificate(_der(pki.issue_certificate(ca, "alice"))) == Identity("alice")


def test_other_subject_attributes_do_not_matter(ca: pki.CertifiedKey) -> None:
    der = _with_subject(ca, (NameOID.ORGANIZATION_NAME, "bob"), (NameOID.COMMON_NAME, "Dana Smith"))
    assert identity_from_certificate(der) == Identity("Dana Smith")


def test_identity_is_frozen() -> None:
    identity = Identity("alice")
    with pytest.raises(AttributeError):
        identity.user = "charlie"  # type: ignore[misc]


def test_certificate_with_both_purposes_is_accepted(ca: pki.CertifiedKey) -> None:
    both = pki.issue_certificate(ca, "alice", extended_key_usage=(pki.SERVER_AUTH, pki.CLIENT_AUTH))
    assert identity_from_certificate(_der(both)).user == "alice"


def test_server_only_certificate_is_refused(ca: pki.CertifiedKey) -> None:
    server = pki.issue_certificate(ca, "alice", extended_key_usage=(pki.SERVER_AUTH,))
    with pytest.raises(AuthenticationError, match="not issued for client authentication"):
        identity_from_certificate(_der(server))


def test_certificate_without_extended_key_usage_is_refused(ca: pki.CertifiedKey) -> None:
    """No EKU means "any purpose" to OpenSSL, so the handshake alone would let it through."""
    any_purpose = pki.issue_certificate(ca, "alice", extended_key_usage=None)
    with pytest.raises(AuthenticationError, match="no extended key usage"):
        identity_from_certificate(_der(any_purpose))


def test_two_common_names_are_ambiguous(ca: pki.CertifiedKey) -> None:
    der = _with_subject(ca, (NameOID.COMMON_NAME, "alice"), (NameOID.COMMON_NAME, "charlie"))
    with pytest.raises(AuthenticationError, match="exactly one common name, not 2"):
        identity_from_certificate(der)


def test_no_common_name(ca: pki.CertifiedKey) -> None:
    der = _with_subject(ca, (NameOID.ORGANIZATION_NAME, "alice"))
    with pytest.raises(AuthenticationError, match="exactly one common name, not 0"):
        identity_from_certificate(der)


@pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning")
def test_empty_common_name(ca: pki.CertifiedKey) -> None:
    # cryptography refuses to build an empty CN unless told not to check; other issuers may not.
    empty = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "", _validate=False)])
    with pytest.raises(AuthenticationError, match="common name is empty"):
        identity_from_certificate(_der(pki.issue_certificate(ca, "unused", subject=empty)))


@pytest.mark.parametrize(
    "cn", ["ali\nce", "alice\x00", "\x1b[31malice", "alice\u2028", " alice", "alice "]
)
def test_unprintable_or_padded_common_name(ca: pki.CertifiedKey, cn: str) -> None:
    with pytest.raises(AuthenticationError, match="unprintable characters or surrounding spaces"):
        identity_from_certificate(_with_subject(ca, (NameOID.COMMON_NAME, cn)))


def test_garbage_is_not_a_certificate() -> None:
    with pytest.raises(AuthenticationError, match="cannot be parsed"):
        identity_from_certificate(b"\x30\x03garbage")
