"""What server_context and client_context build, and how they refuse unusable credentials."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from tlshelp import TlsPki

from jobservice.security.errors import (
    AuthenticationError,
    CredentialError,
    SecurityError,
    TLSPolicyError,
)
from jobservice.security.identity import Identity, identity_from_connection
from jobservice.security.tls import TLS_CIPHER, check_negotiated, client_context, server_context

Builder = Callable[..., ssl.SSLContext]
BUILDERS = [pytest.param(server_context, id="server"), pytest.param(client_context, id="client")]


def _build(builder: Builder, tls_pki: TlsPki) -> ssl.SSLContext:
    pair = tls_pki.server if builder is server_context else tls_pki.alice
    return builder(ca=tls_pki.ca, cert=pair.cert, key=pair.key)


@pytest.mark.parametrize("builder", BUILDERS)
def test_context_policy(builder: Builder, tls_pki: TlsPki) -> None:
    ctx = _build(builder, tls_pki)
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.maximum_version is ssl.TLSVersion.TLSv1_3
    assert [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"] == [TLS_CIPHER]
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION


@pytest.mark.parametrize("builder", BUILDERS)
def test_context_trusts_only_the_given_ca(builder: Builder, tls_pki: TlsPki) -> None:
    ctx = _build(builder, tls_pki)
    assert ctx.cert_store_stats() == {"x509": 1, "crl": 0, "x509_ca": 1}
    [trusted] = ctx.get_ca_certs(binary_form=True)
    ca_pem = tls_pki.ca.read_text()
    assert ssl.DER_cert_to_PEM_cert(trusted).strip() == ca_pem.strip()


def test_server_specifics(our_server_context: ssl.SSLContext) -> None:
    assert our_server_context.check_hostname is False  # clients are identified by CN, not host
    assert our_server_context.options & ssl.OP_NO_TICKET
    assert our_server_context.num_tickets == 0


def test_client_checks_the_host_name(tls_pki: TlsPki) -> None:
    assert _build(client_context, tls_pki).check_hostname is True


def _expect(builder: Builder, message: str, **paths: Path) -> None:
    """builder(**paths) raises a CredentialError whose text includes ``message``.

    Every refusal is checked on both sides: the server diagnoses its files before loading them,
    the client only after OpenSSL refused them (docs/cli.md, "Cold start"), and both must name
    the same fault.
    """
    with pytest.raises(CredentialError) as info:
        builder(**paths)
    assert message in str(info.value)
    assert isinstance(info.value, TLSPolicyError)
    assert isinstance(info.value, SecurityError)


@pytest.mark.parametrize("builder", BUILDERS)
def test_missing_files_are_named(builder: Builder, tls_pki: TlsPki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    good = {"ca": tls_pki.ca, "cert": tls_pki.server.cert, "key": tls_pki.server.key}
    for role in good:
        _expect(builder, f"file {missing}: No such file", **{**good, role: missing})
    # Both missing: the certificate is named, as it is looked at first.
    _expect(
        builder,
        f"certificate file {missing}: No such file",
        **{**good, "cert": missing, "key": missing},
    )


@pytest.mark.parametrize("builder", BUILDERS)
def test_key_not_matching_the_certificate(builder: Builder, tls_pki: TlsPki) -> None:
    _expect(
        builder,
        f"key file {tls_pki.alice.key} does not match certificate file {tls_pki.server.cert}",
        ca=tls_pki.ca,
        cert=tls_pki.server.cert,
        key=tls_pki.alice.key,
    )


@pytest.mark.parametrize("builder", BUILDERS)
def test_garbage_files(builder: Builder, tls_pki: TlsPki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    server = tls_pki.server
    _expect(
        builder,
        f"CA certificate file {junk} holds no usable",
        ca=junk,
        cert=server.cert,
        key=server.key,
    )
    _expect(
        builder, f"certificate file {junk} holds no valid", ca=tls_pki.ca, cert=junk, key=server.key
    )
    _expect(builder, f"key file {junk} holds no valid", ca=tls_pki.ca, cert=server.cert, key=junk)


@pytest.mark.parametrize("builder", BUILDERS)
def test_ca_file_without_a_ca_certificate(builder: Builder, tls_pki: TlsPki) -> None:
    server = tls_pki.server
    _expect(
        builder,
        "holds no CA certificate",
        ca=tls_pki.alice.cert,
        cert=server.cert,
        key=server.key,
    )


@pytest.mark.parametrize("builder", BUILDERS)
def test_own_key_must_be_p384(builder: Builder, tls_pki: TlsPki) -> None:
    """A matching P-256 pair loads into OpenSSL; the policy refuses it before any handshake."""
    _expect(
        builder,
        "not an ECDSA P-384 key",
        ca=tls_pki.ca,
        cert=tls_pki.p256.cert,
        key=tls_pki.p256.key,
    )


@pytest.mark.parametrize("builder", BUILDERS)
def test_encrypted_key_is_refused_without_prompting(
    builder: Builder, tls_pki: TlsPki, tmp_path: Path
) -> None:
    key = serialization.load_pem_private_key(tls_pki.server.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    _expect(builder, "is encrypted", ca=tls_pki.ca, cert=tls_pki.server.cert, key=encrypted)


def _memory_handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """A real TLS handshake over memory BIOs; the server's SSL object."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server_obj = server.wrap_bio(s_in, s_out, server_side=True)
    client_obj = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    done = {server_obj: False, client_obj: False}
    for _ in range(10):
        for obj in (client_obj, server_obj):
            if not done[obj]:
                try:
                    obj.do_handshake()
                    done[obj] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return server_obj
    raise AssertionError("handshake did not complete")


def _permissive_pair(tls_pki: TlsPki, version: ssl.TLSVersion) -> tuple[ssl.SSLContext, ...]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tls_pki.server.cert, tls_pki.server.key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(tls_pki.ca)
    client.maximum_version = version
    return server, client


def test_check_negotiated_passes_the_policy(
    tls_pki: TlsPki, our_server_context: ssl.SSLContext
) -> None:
    client = _build(client_context, tls_pki)
    check_negotiated(_memory_handshake(our_server_context, client))


def test_check_negotiated_refuses_tls12(tls_pki: TlsPki) -> None:
    server_obj = _memory_handshake(*_permissive_pair(tls_pki, ssl.TLSVersion.TLSv1_2))
    assert server_obj.version() == "TLSv1.2"
    with pytest.raises(TLSPolicyError, match=r"negotiated TLSv1\.2"):
        check_negotiated(server_obj)


def test_check_negotiated_refuses_an_unfinished_connection(tls_pki: TlsPki) -> None:
    server, _ = _permissive_pair(tls_pki, ssl.TLSVersion.TLSv1_3)
    fresh = server.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    with pytest.raises(TLSPolicyError, match="no protocol"):
        check_negotiated(fresh)


def test_identity_needs_a_client_certificate(tls_pki: TlsPki) -> None:
    server_obj = _memory_handshake(*_permissive_pair(tls_pki, ssl.TLSVersion.TLSv1_3))
    with pytest.raises(AuthenticationError, match="no certificate"):
        identity_from_connection(server_obj)


def test_identity_from_a_verified_connection(
    tls_pki: TlsPki, our_server_context: ssl.SSLContext
) -> None:
    server_obj = _memory_handshake(our_server_context, _build(client_context, tls_pki))
    assert identity_from_connection(server_obj) == Identity("alice")
