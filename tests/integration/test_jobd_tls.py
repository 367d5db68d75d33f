"""jobd's TLS gate: the post-handshake check, and real clients with good and bad sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.const import Status
from jobdhelp import Jobd, credentials, loopback_config, status_of

from jobservice.api import JobServiceStub, close_channel, open_channel
from jobservice.api.server import JobServer
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.security import pki as devpki

OPENSSL = shutil.which("openssl")


def weak_server_context(pki: Path) -> ssl.SSLContext:
    """A server context that would also accept TLS 1.2: only the post-handshake check is left."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.set_alpn_protocols(["h2"])
    return ctx


def raw_client_context(
    pki: Path, user: str | None, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
) -> ssl.SSLContext:
    """A plain client context (no policy of ours), pinned to one TLS version."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.load_verify_locations(pki / "ca.pem")
    if user is not None:
        ctx.load_cert_chain(pki / f"{user}.pem", pki / f"{user}.key")
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def first_bytes(target: str, ctx: ssl.SSLContext) -> bytes:
    """What the server sends first after a completed handshake (b"" if it just closes)."""
    host, port = target.rsplit(":", 1)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=ctx, server_hostname="localhost"), 10
        )
    except (ConnectionResetError, ssl.SSLError):
        return b""  # in TLS 1.2 the server's side completes first: its drop can cut ours short
    try:
        return await asyncio.wait_for(reader.read(9), 10)
    except (ConnectionResetError, ssl.SSLError):
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def in_process_server(
    pki: Path, data_dir: Path, context: ssl.SSLContext
) -> AsyncIterator[str]:
    server = JobServer(loopback_config(pki, data_dir), context=context)
    host, port = await server.start()
    try:
        yield f"{host}:{port}"
    finally:
        await server.shutdown()


HTTP2_SETTINGS = 0x04


async def test_post_handshake_check_drops_sessions_outside_the_policy(
    pki: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With a server context that lets TLS 1.2 through, the gate alone must still refuse it."""
    async with in_process_server(pki, tmp_path, weak_server_context(pki)) as target:
        with caplog.at_level(logging.WARNING, logger="jobservice.server"):
            tls12 = await first_bytes(
                target, raw_client_context(pki, "alice", ssl.TLSVersion.TLSv1_2)
            )
        assert tls12 == b"", "not one HTTP/2 byte for a TLS 1.2 session"
        assert "dropped connection" in caplog.text
        assert "TLSv1.2" in caplog.text
        # Control: the same server serves a TLS 1.3 / AES-256 session, starting with SETTINGS.
        tls13 = await first_bytes(target, raw_client_context(pki, "alice"))
        assert len(tls13) == 9
        assert tls13[3] == HTTP2_SETTINGS


@pytest.mark.parametrize("user", [None, "stranger"])
async def test_clients_without_a_certificate_from_our_ca_get_nothing(
    shared_jobd: Jobd, pki: Path, tmp_path: Path, user: str | None
) -> None:
    client_pki = pki
    if user == "stranger":  # a valid certificate, but from another CA
        client_pki = tmp_path / "other"
        devpki.init_pki(client_pki, ["stranger"])
        shutil.copy(pki / "ca.pem", client_pki / "ca.pem")  # still trusts the real server
    assert await first_bytes(shared_jobd.target, raw_client_context(client_pki, user)) == b""


async def test_a_certificate_without_client_auth_is_unauthenticated(
    shared_jobd: Jobd, pki: Path, tmp_path: Path
) -> None:
    ca = devpki.load_certified_key(pki / "ca.pem", pki / devpki.CA_KEY)
    # CN=alice from the right CA, but issued for any purpose rather than client authentication.
    devpki.issue_certificate(ca, "alice", extended_key_usage=None).write(
        tmp_path / "any.pem", tmp_path / "any.key"
    )
    channel = await open_channel(
        shared_jobd.target, ca=pki / "ca.pem", cert=tmp_path / "any.pem", key=tmp_path / "any.key"
    )
    try:
        stub = JobServiceStub(channel)
        status, _ = await status_of(stub.List(pb.ListRequest()))
    finally:
        await close_channel(channel)
    assert status is Status.UNAUTHENTICATED


def s_client(target: str, pki: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    creds = credentials(pki, "alice")
    return subprocess.run(
        [OPENSSL, "s_client", "-connect", target, "-servername", "localhost", "-brief",
         "-CAfile", str(creds.ca), "-cert", str(creds.cert), "-key", str(creds.key),
         "-verify_return_error", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=20,
        check=False,
    )  # fmt: skip


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize(
    "args",
    [
        ("-tls1_2",),
        ("-ciphersuites", "TLS_AES_128_GCM_SHA256"),
        ("-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"),
    ],
)
def test_openssl_clients_outside_the_policy_fail(
    shared_jobd: Jobd, pki: Path, args: tuple[str, ...]
) -> None:
    result = s_client(shared_jobd.target, pki, *args)
    assert result.returncode != 0
    assert "TLS_AES_256_GCM_SHA384" not in result.stdout + result.stderr


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_openssl_client_with_a_good_certificate_gets_tls13_aes256(
    shared_jobd: Jobd, pki: Path
) -> None:
    result = s_client(shared_jobd.target, pki)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    assert "Protocol version: TLSv1.3" in text
    assert "Ciphersuite: TLS_AES_256_GCM_SHA384" in text
