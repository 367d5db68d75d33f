"""TLS test helpers: a PKI with good and bad certificates, a real echo server, s_client."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from jobservice.security import pki
from jobservice.security.identity import identity_from_connection
from jobservice.security.tls import check_negotiated

OPENSSL = "/usr/bin/openssl"
_HANDSHAKE_TIMEOUT = 10.0
_CLIENT_TIMEOUT = 15.0


@dataclass(frozen=True)
class Pair:
    """A certificate file and its key file."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class TlsPki:
    """Paths of the session's PKI: the trusted CA, good parties, and bad client certificates."""

    ca: Path
    server: Pair
    alice: Pair
    other_ca: Path  # a second, independent CA
    from_other_ca: Pair  # CN=alice, but issued by other_ca
    expired: Pair
    not_yet_valid: Pair
    p256: Pair  # a client certificate on P-256 instead of P-384
    any_purpose: Pair  # CN=alice from the right CA, but without an extended key usage
    wrong_name_server: Pair  # a server certificate whose only SAN is not.localhost.invalid


def _write(directory: Path, stem: str, certified: pki.CertifiedKey) -> Pair:
    pair = Pair(directory / f"{stem}.pem", directory / f"{stem}.key")
    certified.write(pair.cert, pair.key)
    return pair


def make_tls_pki(out: Path) -> TlsPki:
    """Write the PKI into ``out``."""
    pki.init_pki(out, ["alice"])
    ca = pki.load_certified_key(out / "ca.pem", out / pki.CA_KEY)
    other = pki.create_ca("another CA")
    now = datetime.now(UTC)
    return TlsPki(
        ca=out / "ca.pem",
        server=Pair(out / "server.pem", out / "server.key"),
        alice=Pair(out / "alice.pem", out / "alice.key"),
        other_ca=_write(out, "other-ca", other).cert,
        from_other_ca=_write(out, "other-alice", pki.issue_certificate(other, "alice")),
        expired=_write(
            out,
            "expired",
            pki.issue_certificate(
                ca, "alice", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
            ),
        ),
        not_yet_valid=_write(
            out,
            "not-yet-valid",
            pki.issue_certificate(
                ca, "alice", not_before=now + timedelta(days=1), not_after=now + timedelta(days=30)
            ),
        ),
        p256=_write(
            out, "p256", pki.issue_certificate(ca, "alice", key=pki.new_key(ec.SECP256R1()))
        ),
        any_purpose=_write(
            out, "any-purpose", pki.issue_certificate(ca, "alice", extended_key_usage=None)
        ),
        wrong_name_server=_write(
            out,
            "wrong-name-server",
            pki.issue_certificate(
                ca,
                "localhost",
                extended_key_usage=(pki.SERVER_AUTH,),
                hosts=("not.localhost.invalid",),
            ),
        ),
    )


@dataclass(frozen=True)
class Outcome:
    """What the server saw of one connection: the negotiated parameters, or why it refused."""

    error: BaseException | None = None
    version: str | None = None
    cipher: str | None = None
    user: str | None = None


@dataclass
class EchoServer:
    """A TLS echo server on loopback: one line back per connection, then close.

    The handshake is run with ``StreamWriter.start_tls`` rather than ``start_server(ssl=...)``
    so that the server's own reason for refusing a peer is observable (asyncio swallows it
    otherwise); the TLS work is the same OpenSSL handshake on the same context.
    """

    context: ssl.SSLContext
    check: bool
    port: int = 0
    outcomes: asyncio.Queue[Outcome] = field(default_factory=asyncio.Queue)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await writer.start_tls(self.context, ssl_handshake_timeout=_HANDSHAKE_TIMEOUT)
            ssl_obj = writer.get_extra_info("ssl_object")
            if self.check:
                check_negotiated(ssl_obj)  # before any application byte is read
            cipher = ssl_obj.cipher()
            outcome = Outcome(
                version=ssl_obj.version(),
                cipher=cipher[0] if cipher else None,
                user=identity_from_connection(ssl_obj).user,
            )
        except Exception as exc:
            self.outcomes.put_nowait(Outcome(error=exc))
            writer.transport.abort()
            return
        self.outcomes.put_nowait(outcome)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            writer.write(await reader.readline())
            await writer.drain()
        writer.close()

    async def next_outcome(self) -> Outcome:
        return await asyncio.wait_for(self.outcomes.get(), _HANDSHAKE_TIMEOUT)


@contextlib.asynccontextmanager
async def serve(context: ssl.SSLContext, *, check: bool = True) -> AsyncIterator[EchoServer]:
    """Run an EchoServer on 127.0.0.1 with an OS-chosen port for the duration of the block."""
    echo = EchoServer(context, check)
    server = await asyncio.start_server(echo.handle, "127.0.0.1", 0)
    echo.port = server.sockets[0].getsockname()[1]
    try:
        yield echo
    finally:
        server.close()
        await server.wait_closed()


@dataclass(frozen=True)
class ClientRun:
    """The result of one ``openssl s_client`` run."""

    returncode: int
    output: str


async def s_client(port: int, ca: Path, *args: str) -> ClientRun:
    """Connect with ``openssl s_client``, send one line and read until the server closes."""
    proc = await asyncio.create_subprocess_exec(
        OPENSSL,
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-CAfile",
        str(ca),
        "-verify_return_error",
        "-ign_eof",  # wait for the echo instead of quitting at the end of stdin
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(b"ping-through-tls\n"), _CLIENT_TIMEOUT)
    except TimeoutError:
        proc.kill()  # our own child, by its handle
        await proc.wait()
        raise
    assert proc.returncode is not None
    return ClientRun(proc.returncode, out.decode(errors="replace"))


@contextlib.asynccontextmanager
async def s_server(cert: Pair, *args: str) -> AsyncIterator[int]:
    """Run ``openssl s_server`` on 127.0.0.1 with an OS-chosen port; yields the port."""
    proc = await asyncio.create_subprocess_exec(
        OPENSSL,
        "s_server",
        "-accept",
        "127.0.0.1:0",
        "-naccept",
        "1",
        "-cert",
        str(cert.cert),
        "-key",
        str(cert.key),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        yield await asyncio.wait_for(_accepted_port(proc), _CLIENT_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()  # our own child, by its handle
        await proc.wait()


async def _accepted_port(proc: asyncio.subprocess.Process) -> int:
    """The port from s_server's ``ACCEPT 127.0.0.1:PORT`` line."""
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        if line.startswith(b"ACCEPT "):
            return int(line.rsplit(b":", 1)[1])
    raise AssertionError("openssl s_server exited before accepting")
