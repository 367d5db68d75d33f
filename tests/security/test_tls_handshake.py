"""The TLS policy as an outside client sees it: `openssl s_client` against a real server."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
from tlshelp import Outcome, Pair, TlsPki, s_client, serve

from jobservice.security.errors import AuthenticationError, TLSPolicyError

ECHO = "ping-through-tls"


def _with(pair: Pair) -> list[str]:
    return ["-cert", str(pair.cert), "-key", str(pair.key)]


async def test_good_client_gets_tls13_aes256_p384(
    tls_pki: TlsPki, our_server_context: ssl.SSLContext
) -> None:
    async with serve(our_server_context) as server:
        run = await s_client(server.port, tls_pki.ca, *_with(tls_pki.alice))
        outcome = await server.next_outcome()
    assert run.returncode == 0, run.output
    assert "New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384" in run.output
    assert "Server Temp Key: ECDH, secp384r1, 384 bits" in run.output
    assert "Peer signature type: ECDSA" in run.output
    assert "Peer signing digest: SHA384" in run.output
    assert ECHO in run.output
    assert outcome == Outcome(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", user="alice")


# Each case: s_client arguments, then the reason the server's handshake must give.
_REFUSED: dict[str, tuple[Callable[[TlsPki], list[str]], str]] = {
    "tls1.2": (lambda p: [*_with(p.alice), "-tls1_2"], "UNSUPPORTED_PROTOCOL"),
    "aes128": (
        lambda p: [*_with(p.alice), "-ciphersuites", "TLS_AES_128_GCM_SHA256"],
        "NO_SHARED_CIPHER",
    ),
    "chacha20": (
        lambda p: [*_with(p.alice), "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        "NO_SHARED_CIPHER",
    ),
    "x25519": (lambda p: [*_with(p.alice), "-groups", "X25519"], "NO_SUITABLE_KEY_SHARE"),
    "p256-p521-groups": (
        lambda p: [*_with(p.alice), "-groups", "P-256:P-521"],
        "NO_SUITABLE_KEY_SHARE",
    ),
    "no-client-cert": (lambda p: [], "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
    "other-ca": (lambda p: _with(p.from_other_ca), "unable to get local issuer certificate"),
    "expired": (lambda p: _with(p.expired), "certificate has expired"),
    "not-yet-valid": (lambda p: _with(p.not_yet_valid), "certificate is not yet valid"),
    "server-cert-as-client": (lambda p: _with(p.server), "unsuitable certificate purpose"),
    # A P-256 client key cannot produce an allowed (P-384/SHA-384) signature, so no cert is sent.
    "p256-client-key": (lambda p: _with(p.p256), "PEER_DID_NOT_RETURN_A_CERTIFICATE"),
}


@pytest.mark.parametrize("case", list(_REFUSED))
async def test_handshake_refuses(
    case: str, tls_pki: TlsPki, our_server_context: ssl.SSLContext
) -> None:
    """Refused by the handshake itself: the post-handshake check is off in this server."""
    args, reason = _REFUSED[case]
    async with serve(our_server_context, check=False) as server:
        run = await s_client(server.port, tls_pki.ca, *args(tls_pki))
        outcome = await server.next_outcome()
    assert isinstance(outcome.error, ssl.SSLError), outcome
    assert reason in str(outcome.error)
    assert run.returncode != 0, run.output
    assert ECHO not in run.output


async def test_certificate_without_client_auth_is_refused_after_the_handshake(
    tls_pki: TlsPki, our_server_context: ssl.SSLContext
) -> None:
    """OpenSSL takes a certificate without EKU as any purpose; the identity check does not."""
    async with serve(our_server_context) as server:
        run = await s_client(server.port, tls_pki.ca, *_with(tls_pki.any_purpose))
        outcome = await server.next_outcome()
    assert isinstance(outcome.error, AuthenticationError), outcome
    assert "no extended key usage" in str(outcome.error)
    assert "Cipher is TLS_AES_256_GCM_SHA384" in run.output  # the handshake itself succeeded
    assert ECHO not in run.output


@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"])
async def test_post_handshake_check_drops_a_weaker_suite(tls_pki: TlsPki, suite: str) -> None:
    """The second line of defence: a context that allowed the suite still gets no byte through."""
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.load_cert_chain(tls_pki.server.cert, tls_pki.server.key)
    async with serve(permissive, check=True) as server:
        run = await s_client(server.port, tls_pki.ca, "-ciphersuites", suite)
        outcome = await server.next_outcome()
    assert isinstance(outcome.error, TLSPolicyError)
    assert suite in str(outcome.error)
    assert ECHO not in run.output


async def test_post_handshake_check_drops_tls12(tls_pki: TlsPki) -> None:
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.load_cert_chain(tls_pki.server.cert, tls_pki.server.key)
    async with serve(permissive, check=True) as server:
        run = await s_client(server.port, tls_pki.ca, "-tls1_2")
        outcome = await server.next_outcome()
    assert isinstance(outcome.error, TLSPolicyError)
    assert "TLSv1.2" in str(outcome.error)
    assert ECHO not in run.output
