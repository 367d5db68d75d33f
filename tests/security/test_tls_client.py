"""client_context against a real server: the policy holds on both ends, and names are checked."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from tlshelp import Outcome, TlsPki, s_server, serve

from jobservice.security.tls import (
    TLS_CIPHER,
    check_negotiated,
    client_context,
    server_context,
)

ECHO = b"ping-through-tls\n"


def _client(tls_pki: TlsPki, *, ca: Path | None = None) -> ssl.SSLContext:
    """alice's client context, trusting the session CA unless told otherwise."""
    return client_context(ca=ca or tls_pki.ca, cert=tls_pki.alice.cert, key=tls_pki.alice.key)


async def _exchange(port: int, context: ssl.SSLContext, host: str) -> ssl.SSLObject:
    """Connect, check the policy client-side, echo one line; the client's SSL object."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=host), 10
    )
    try:
        ssl_obj = writer.get_extra_info("ssl_object")
        check_negotiated(ssl_obj)
        writer.write(ECHO)
        assert await asyncio.wait_for(reader.readline(), 10) == ECHO
        return ssl_obj  # type: ignore[no-any-return]
    finally:
        writer.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_client_context_connects_under_the_policy(
    tls_pki: TlsPki, our_server_context: ssl.SSLContext, host: str
) -> None:
    async with serve(our_server_context) as server:
        ssl_obj = await _exchange(server.port, _client(tls_pki), host)
        outcome = await server.next_outcome()
    assert ssl_obj.version() == "TLSv1.3"
    assert ssl_obj.cipher()[0] == TLS_CIPHER  # type: ignore[index]
    assert ssl_obj.selected_alpn_protocol() == "h2"
    assert outcome == Outcome(version="TLSv1.3", cipher=TLS_CIPHER, user="alice")


async def test_client_refuses_a_server_from_another_ca(
    tls_pki: TlsPki, our_server_context: ssl.SSLContext
) -> None:
    async with serve(our_server_context) as server:
        with pytest.raises(
            ssl.SSLCertVerificationError,
            match=r"self-signed certificate in certificate chain|unable to get local issuer",
        ):
            await _exchange(server.port, _client(tls_pki, ca=tls_pki.other_ca), "localhost")


@pytest.mark.parametrize(
    ("host", "mismatch"), [("localhost", "Hostname mismatch"), ("127.0.0.1", "IP address mismatch")]
)
async def test_client_refuses_a_server_certificate_for_another_name(
    tls_pki: TlsPki, host: str, mismatch: str
) -> None:
    wrong = server_context(
        ca=tls_pki.ca, cert=tls_pki.wrong_name_server.cert, key=tls_pki.wrong_name_server.key
    )
    async with serve(wrong) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match=mismatch):
            await _exchange(server.port, _client(tls_pki), host)


async def _handshake(port: int, context: ssl.SSLContext) -> ssl.SSLObject:
    """Connect and complete the handshake; the client's SSL object."""
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost"), 10
    )
    ssl_obj: ssl.SSLObject = writer.get_extra_info("ssl_object")
    writer.close()
    return ssl_obj


async def test_client_context_accepts_a_server_under_the_policy(tls_pki: TlsPki) -> None:
    async with s_server(tls_pki.server, "-CAfile", str(tls_pki.ca), "-Verify", "1") as port:
        ssl_obj = await _handshake(port, _client(tls_pki))
    check_negotiated(ssl_obj)
    assert ssl_obj.cipher()[0] == TLS_CIPHER  # type: ignore[index]


@pytest.mark.parametrize(
    "server_args",
    [
        ["-ciphersuites", "TLS_AES_128_GCM_SHA256"],
        ["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"],
        ["-groups", "X25519:P-256"],
        ["-tls1_2"],
    ],
    ids=["aes128", "chacha20", "other-groups", "tls1.2"],
)
async def test_client_context_refuses_a_weaker_server(
    tls_pki: TlsPki, server_args: list[str]
) -> None:
    """The client keeps the policy too: a server that would settle for less gets no handshake."""
    async with s_server(tls_pki.server, *server_args) as port:
        with pytest.raises(ssl.SSLError):
            await _handshake(port, _client(tls_pki))
