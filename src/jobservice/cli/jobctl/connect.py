"""Reach the server: check --user against the certificate, open the channel, map failures."""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

from jobservice.cli.jobctl.config import Settings
from jobservice.cli.jobctl.exitcodes import CliError, ExitCode, from_exception

if TYPE_CHECKING:
    import asyncio

    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["CONNECT_TIMEOUT", "RPC_TIMEOUT", "call", "certificate_user", "check_user", "connected"]

CONNECT_TIMEOUT = 10.0
# Unary calls other than Stop (which waits out the job's grace period) answer at once.
RPC_TIMEOUT = 30.0
T = TypeVar("T")


def certificate_user(cert: str | bytes) -> str:
    """The user a PEM certificate authenticates as (its CN), read as the server reads it."""
    import ssl

    from jobservice.security.identity import identity_from_certificate

    pem = cert.decode("ascii", "replace") if isinstance(cert, bytes) else cert
    return identity_from_certificate(ssl.PEM_cert_to_DER_cert(pem)).user


def check_user(settings: Settings) -> None:
    """`--user NAME` is a statement about the certificate: refuse to go on if it is false."""
    if settings.user is None:
        return
    try:
        actual = certificate_user(settings.cert.read_bytes())
    except Exception as exc:  # any parse failure is the same answer to the user
        raise CliError(
            f"Cannot read a user from certificate {settings.cert}: {exc}", ExitCode.USAGE
        ) from None
    if actual != settings.user:
        raise CliError(
            f"--user is '{settings.user}' but certificate {settings.cert} is for '{actual}'; "
            f"pass the certificate of '{settings.user}' or drop --user.",
            ExitCode.USAGE,
        )


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[JobServiceStub]:
    """A stub on a connected, policy-checked TLS channel; closed on exit."""
    from jobservice._upstream.hyperframe import quiet_data_frame_repr
    from jobservice.address import format_address
    from jobservice.api import JobServiceStub, open_channel

    quiet_data_frame_repr()  # h2 would hex-dump every DATA frame it receives (see there)
    channel = await open_channel(
        format_address(settings.host, settings.port),
        ca=settings.ca,
        cert=settings.cert,
        key=settings.key,
        connect_timeout=CONNECT_TIMEOUT,
    )
    try:
        yield JobServiceStub(channel)
    finally:
        channel.close()


def _fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop factory, or None (asyncio's own) where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def call(
    settings: Settings,
    body: Callable[[JobServiceStub], Awaitable[T]],
    *,
    job: int | None = None,
    streaming: bool = False,
) -> T:
    """Run `body` with a connected stub; any failure becomes a CliError about `job`.

    `streaming` verbs (output, run) run on uvloop when it is installed: its compiled TLS
    transport roughly doubles the bytes per second this client can take in. One-shot verbs
    stay on asyncio's loop, as importing uvloop (~3.5 ms) would only add to their cold start.
    """
    check_user(settings)
    import asyncio

    async def main() -> T:
        async with connected(settings) as stub:
            return await body(stub)

    try:
        with asyncio.Runner(loop_factory=_fast_loop_factory() if streaming else None) as runner:
            return runner.run(main())
    except (CliError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the boundary: every other failure is translated, none leaks
        raise _explained(exc, settings) or from_exception(
            exc, server=settings.server, job=job
        ) from exc


# Failures that a certificate of ours the server would not take can explain (TLS 1.3: a closed
# connection; TLS 1.2 servers and some others: an alert during the handshake).
_REFUSALS = ("REJECTED", "TLS_HANDSHAKE")


def _explained(exc: Exception, settings: Settings) -> CliError | None:
    """A refused connection, explained by what is wrong with our certificate, if anything."""
    reason = getattr(exc, "reason", None)
    if getattr(reason, "name", None) not in _REFUSALS:
        return None
    from jobservice.cli.jobctl.certcheck import certificate_problem

    problem = certificate_problem(settings.cert, settings.ca)
    if problem is None:
        return None
    return CliError(
        f"The server at {settings.server} refused the connection: {problem}.", ExitCode.CONNECTION
    )
