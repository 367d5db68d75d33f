"""One NATS connection per process: TLS 1.3 with our one cipher suite, a certificate from the
cluster's CA, and reconnection to any server of the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.aio.client import Client

from jobservice.cluster.errors import ClusterError
from jobservice.security import tls

__all__ = ["NatsSettings", "connect", "nats_tls_context"]

log = logging.getLogger("jobservice.cluster")

# How long to keep trying servers that do not answer before giving up at start-up.
_CONNECT_WAIT = 30.0


@dataclass(frozen=True)
class NatsSettings:
    """Where the cluster is and the certificate this process presents to it."""

    servers: tuple[str, ...]  # nats://HOST:PORT or tls://HOST:PORT
    ca: Path
    cert: Path
    key: Path
    # Stream and bucket replicas to create (1 on a single server, whatever this asks).
    replicas: int = 3

    @classmethod
    def parse_servers(cls, urls: str) -> tuple[str, ...]:
        """`--nats URL[,URL...]` as a tuple; a bare HOST:PORT means tls://HOST:PORT."""
        servers = tuple(u.strip() for u in urls.split(",") if u.strip())
        if not servers:
            raise ValueError("--nats needs at least one URL")
        return tuple(u if "://" in u else f"tls://{u}" for u in servers)


def nats_tls_context(settings: NatsSettings) -> ssl.SSLContext:
    """The project's client context (TLS 1.3, TLS_AES_256_GCM_SHA384, P-384), without ALPN.

    NATS speaks its own protocol over TLS; the `h2` offer made for gRPC does not belong here.
    """
    ctx = tls.client_context(ca=settings.ca, cert=settings.cert, key=settings.key)
    ctx.set_alpn_protocols([])
    return ctx


async def connect(settings: NatsSettings, name: str, inbox_prefix: str) -> Client:
    """Connect to the first server that answers; afterwards reconnect forever, to any of them.

    Replies come to subjects under `inbox_prefix`, which this role alone may subscribe to
    (`layout.front_inbox`, `layout.node_inbox`).

    Raises ClusterError at once if the cluster refuses this certificate, and after
    `_CONNECT_WAIT` seconds if no server answers.
    """
    refused = asyncio.Event()
    reasons: list[str] = []
    nc: Client | None = None

    async def on_error(exc: Exception) -> None:
        if nc is None and _is_refusal(exc):
            reasons.append(str(exc))
            refused.set()
        log.warning("nats: %s", exc)

    async def on_disconnect() -> None:
        if nc is not None and not nc.is_closed:
            log.warning("nats: disconnected; reconnecting")

    async def on_reconnect() -> None:
        if nc is not None and nc.connected_url is not None:
            log.info("nats: reconnected to %s", nc.connected_url.netloc)

    connecting = asyncio.ensure_future(
        nats.connect(
            servers=list(settings.servers),
            tls=nats_tls_context(settings),
            name=name,
            inbox_prefix=inbox_prefix,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=5,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
        )
    )
    refusal = asyncio.ensure_future(refused.wait())
    try:
        await asyncio.wait(
            {connecting, refusal}, timeout=_CONNECT_WAIT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        refusal.cancel()
    where = ", ".join(settings.servers)
    if not connecting.done():
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        why = f"refused: {reasons[0]}" if reasons else f"no answer in {_CONNECT_WAIT:g} s"
        raise ClusterError(f"cannot connect to NATS at {where}: {why}")
    try:
        nc = connecting.result()
    except Exception as exc:  # nats-py raises several unrelated types for an unreachable cluster
        raise ClusterError(f"cannot connect to NATS at {where}: {exc}") from exc
    return nc


def _is_refusal(exc: Exception) -> bool:
    """The server refused who we are: retrying with the same certificate cannot help."""
    text = str(exc).lower()
    return "authorization violation" in text or "certificate" in text
