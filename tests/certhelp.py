"""Client certificates unlike the PKI's, minted with a CA's key, to test what identity refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.name import _ASN1Type  # the string types the PKI never writes
from cryptography.x509.oid import NameOID

from jobservice.security import pki

__all__ = ["END_ENTITY", "Hash", "StringType", "mint_client"]

END_ENTITY = x509.BasicConstraints(ca=False, path_length=None)
Hash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512
StringType = _ASN1Type


def mint_client(
    ca: pki.CertifiedKey,
    *,
    basic: x509.BasicConstraints | None = END_ENTITY,
    algorithm: Hash | None = None,
    cn_type: StringType = StringType.UTF8String,
    name: str = "alice",
) -> pki.CertifiedKey:
    """A clientAuth certificate from `ca` with the given basicConstraints, hash and CN type.

    Everything else is as the PKI writes it (key usage, key identifiers), so that OpenSSL's
    strict chain checks pass and only what the caller changed is different.
    """
    key = pki.new_key()
    now = datetime.now(UTC)
    cn = x509.NameAttribute(NameOID.COMMON_NAME, name, _type=cn_type)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([cn]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([pki.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    if basic is not None:
        builder = builder.add_extension(basic, critical=True)
        builder = builder.add_extension(_key_usage(cert_sign=basic.ca), critical=True)
    return pki.CertifiedKey(builder.sign(ca.key, algorithm or hashes.SHA384()), key)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
