"""The development PKI: key types, signatures, extensions, file modes, and what it refuses."""

from __future__ import annotations

import ipaddress
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jobservice.security import pki
from jobservice.security.errors import PKIError

USERS = ["alice", "bob", "charlie"]
_E = TypeVar("_E", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "dev-pki"
    pki.init_pki(directory, USERS)
    return directory


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _ext(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E]:
    return cert.extensions.get_extension_for_class(kind)


def test_files_written(out: Path) -> None:
    stems = ["server", *USERS]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["ca.pem", "ca-private", *(f"{s}.{e}" for s in stems for e in ("pem", "key"))]
    )
    # The CA key is apart: copying the files a server needs never takes it along.
    assert [p.name for p in (out / "ca-private").iterdir()] == ["ca.key"]


def test_keys_are_0600_and_certificates_0644(out: Path) -> None:
    for path in [*out.iterdir(), out / pki.CA_KEY]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644 if path.suffix else 0o700), path
    assert stat.S_IMODE(out.stat().st_mode) == 0o700


def test_key_files_are_created_private_despite_a_permissive_umask(tmp_path: Path) -> None:
    """0600 comes from os.open's mode, not a chmod afterwards (umask can only remove bits)."""
    old = os.umask(0)
    try:
        pki.init_pki(tmp_path / "p", ["alice"])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p" / "alice.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "p" / pki.CA_KEY).stat().st_mode) == 0o600


@pytest.mark.parametrize("stem", ["ca", "server", *USERS])
def test_keys_are_unencrypted_pkcs8_p384_matching_their_certificate(out: Path, stem: str) -> None:
    pem = (out / (pki.CA_KEY if stem == "ca" else f"{stem}.key")).read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, not SEC1 "EC PRIVATE KEY"
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP384R1)
    assert key.public_key() == _cert(out / f"{stem}.pem").public_key()


@pytest.mark.parametrize("stem", ["ca", "server", *USERS])
def test_certificates_are_sha384_signed_by_the_ca(out: Path, stem: str) -> None:
    ca = _cert(out / "ca.pem")
    cert = _cert(out / f"{stem}.pem")
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)  # raises if the signature is not the CA's
    now = datetime.now(UTC)
    assert now - timedelta(minutes=10) < cert.not_valid_before_utc < now
    assert cert.not_valid_after_utc > now + timedelta(days=364)


def test_serials_are_random_and_distinct(out: Path) -> None:
    serials = [_cert(p).serial_number for p in out.glob("*.pem")]
    assert len(set(serials)) == len(serials)
    assert all(s.bit_length() > 100 for s in serials)


def test_ca_extensions(out: Path) -> None:
    ca = _cert(out / "ca.pem")
    assert ca.subject == ca.issuer
    basic = _ext(ca, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = _ext(ca, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert _ext(ca, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        ca.public_key()
    )


def _check_end_entity(
    cert: x509.Certificate, ca: x509.Certificate, eku: x509.ObjectIdentifier
) -> None:
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca is False
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [eku]
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        cert.public_key()
    )


def test_server_certificate(out: Path) -> None:
    cert = _cert(out / "server.pem")
    _check_end_entity(cert, _cert(out / "ca.pem"), ExtendedKeyUsageOID.SERVER_AUTH)
    sans = _ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


@pytest.mark.parametrize("user", USERS)
def test_user_certificates(out: Path, user: str) -> None:
    cert = _cert(out / f"{user}.pem")
    _check_end_entity(cert, _cert(out / "ca.pem"), ExtendedKeyUsageOID.CLIENT_AUTH)
    assert [a.value for a in cert.subject] == [user]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == user
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)


def test_refuses_to_overwrite_an_existing_pki(out: Path) -> None:
    files = [*(p for p in out.iterdir() if p.is_file()), out / pki.CA_KEY]
    before = {p: p.read_bytes() for p in files}
    with pytest.raises(PKIError, match="refusing to overwrite") as info:
        pki.init_pki(out, USERS)
    assert "ca.pem" in str(info.value)
    assert "overwrite=True" not in str(info.value)  # jobd pki says what to do instead
    assert {p: p.read_bytes() for p in files} == before


def test_refuses_even_when_only_one_file_exists(tmp_path: Path) -> None:
    (tmp_path / "bob.key").write_text("someone's key")
    with pytest.raises(PKIError, match=r"bob\.key"):
        pki.init_pki(tmp_path, ["alice", "bob"])
    assert [p.name for p in tmp_path.iterdir()] == ["bob.key"]  # nothing half-written


def test_overwrite_replaces_everything_with_a_new_ca(tmp_path: Path) -> None:
    pki.init_pki(tmp_path, ["alice"])
    old_ca = (tmp_path / "ca.pem").read_bytes()
    (tmp_path / "alice.key").chmod(0o644)  # a loosened key must not keep its mode
    pki.init_pki(tmp_path, ["alice"], overwrite=True)
    assert (tmp_path / "ca.pem").read_bytes() != old_ca
    assert stat.S_IMODE((tmp_path / "alice.key").stat().st_mode) == 0o600
    _cert(tmp_path / "alice.pem").verify_directly_issued_by(_cert(tmp_path / "ca.pem"))


def test_key_files_never_follow_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("do not touch")
    pki_dir = tmp_path / "p"
    pki_dir.mkdir()
    (pki_dir / "alice.key").symlink_to(target)
    with pytest.raises(PKIError):
        pki.init_pki(pki_dir, ["alice"])
    assert target.read_text() == "do not touch"
    pki.init_pki(pki_dir, ["alice"], overwrite=True)  # replaces the link, not what it points to
    assert target.read_text() == "do not touch"
    assert not (pki_dir / "alice.key").is_symlink()


def test_repeated_user_is_issued_once(tmp_path: Path) -> None:
    pki.init_pki(tmp_path, ["alice", "alice"])
    assert sorted(p.stem for p in tmp_path.glob("*.pem")) == ["alice", "ca", "server"]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/",
        "../x",
        "a/b",
        ".hidden",
        "-rf",
        "bad\x00",
        "tab\there",
        "new\nline",
        "x" * 65,
        "ca",
        "Server",
        "caf\u00e9",
        " alice",
    ],
)
def test_bad_user_names_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(PKIError, match="invalid user name"):
        pki.init_pki(tmp_path / "p", ["alice", name])
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(
    "name", ["alice", "Bob", "user.name", "d_2", "ops@example.org", "a-b", "x" * 64]
)
def test_sane_user_names_are_accepted(name: str) -> None:
    assert pki.validate_user_name(name) == name


def test_days_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="at least one day"):
        pki.init_pki(tmp_path / "p", ["alice"], days=0)


def test_issue_certificate_options_for_hardening_tests() -> None:
    ca = pki.create_ca("test CA")
    now = datetime.now(UTC)
    expired = pki.issue_certificate(
        ca, "alice", not_before=now - timedelta(days=2), not_after=now - timedelta(days=1)
    )
    assert expired.certificate.not_valid_after_utc < now
    server_only = pki.issue_certificate(ca, "alice", extended_key_usage=(pki.SERVER_AUTH,))
    assert list(_ext(server_only.certificate, x509.ExtendedKeyUsage).value) == [pki.SERVER_AUTH]
    any_purpose = pki.issue_certificate(ca, "alice", extended_key_usage=None)
    with pytest.raises(x509.ExtensionNotFound):
        _ext(any_purpose.certificate, x509.ExtendedKeyUsage)
    p256 = pki.issue_certificate(ca, "alice", key=pki.new_key(ec.SECP256R1()))
    assert isinstance(p256.key.curve, ec.SECP256R1)
    with pytest.raises(PKIError, match="expire"):
        pki.issue_certificate(ca, "alice", not_before=now, not_after=now - timedelta(days=1))


def test_two_cas_are_independent() -> None:
    assert pki.create_ca().certificate.subject != pki.create_ca().certificate.subject
    first, second = pki.create_ca("same name"), pki.create_ca("same name")
    user = pki.issue_certificate(first, "alice")
    with pytest.raises(InvalidSignature):
        user.certificate.verify_directly_issued_by(second.certificate)


def test_load_certified_key_round_trip_and_mismatch(out: Path) -> None:
    ca = pki.load_certified_key(out / "ca.pem", out / pki.CA_KEY)
    assert ca.certificate == _cert(out / "ca.pem")
    with pytest.raises(PKIError, match="does not match"):
        pki.load_certified_key(out / "ca.pem", out / "alice.key")
    with pytest.raises(PKIError, match="cannot load"):
        pki.load_certified_key(out / "missing.pem", out / pki.CA_KEY)
