"""The caller's identity: the one printable CN of a certificate issued for client auth."""

from __future__ import annotations

import pytest
from certhelp import END_ENTITY, Hash, StringType, mint_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from jobservice.security import pki
from jobservice.security.errors import AuthenticationError
from jobservice.security.identity import Identity, common_name_tag, identity_from_certificate


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


def _custom(
    ca: pki.CertifiedKey,
    *,
    basic: x509.BasicConstraints | None = END_ENTITY,
    algorithm: Hash | None = None,
    cn_type: StringType = StringType.UTF8String,
) -> bytes:
    """alice's client certificate from `ca` with the given basicConstraints, hash and CN type."""
    certified = mint_client(ca, basic=basic, algorithm=algorithm, cn_type=cn_type)
    return _der(certified)


def test_a_certificate_built_as_the_pki_does_is_accepted(ca: pki.CertifiedKey) -> None:
    assert identity_from_certificate(_custom(ca)) == Identity("alice")
    printable = _custom(ca, cn_type=StringType.PrintableString)
    assert identity_from_certificate(printable) == Identity("alice")


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("ca-true", "a CA certificate"),
        ("no-basic-constraints", "no basic constraints"),
        ("ecdsa-with-sha256", "not signed with ecdsa-with-SHA384"),
        ("ecdsa-with-sha512", "not signed with ecdsa-with-SHA384"),
        ("bmpstring-cn", "not a UTF8String or PrintableString"),
        ("teletexstring-cn", "not a UTF8String or PrintableString"),
        ("universalstring-cn", "not a UTF8String or PrintableString"),
    ],
)
def test_certificates_unlike_the_pkis_are_refused(
    ca: pki.CertifiedKey, kind: str, error: str
) -> None:
    der = {
        "ca-true": lambda: _custom(ca, basic=x509.BasicConstraints(ca=True, path_length=None)),
        "no-basic-constraints": lambda: _custom(ca, basic=None),
        "ecdsa-with-sha256": lambda: _custom(ca, algorithm=hashes.SHA256()),
        "ecdsa-with-sha512": lambda: _custom(ca, algorithm=hashes.SHA512()),
        "bmpstring-cn": lambda: _custom(ca, cn_type=StringType.BMPString),
        "teletexstring-cn": lambda: _custom(ca, cn_type=StringType.T61String),
        "universalstring-cn": lambda: _custom(ca, cn_type=StringType.UniversalString),
    }[kind]()
    with pytest.raises(AuthenticationError, match=error):
        identity_from_certificate(der)


def test_the_common_name_tag_is_read_from_the_der() -> None:
    def name(*attributes: x509.NameAttribute[str]) -> bytes:
        return x509.Name(attributes).public_bytes()

    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x" * 300)  # a long-form length first
    utf8 = x509.NameAttribute(NameOID.COMMON_NAME, "alice")
    bmp = x509.NameAttribute(NameOID.COMMON_NAME, "alice", _type=StringType.BMPString)
    assert common_name_tag(name(org, utf8)) == 0x0C
    assert common_name_tag(name(org, bmp)) == 0x1E
    assert common_name_tag(name(org)) is None
