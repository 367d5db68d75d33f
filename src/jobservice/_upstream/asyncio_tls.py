"""The server side of a TLS handshake on an accepted TCP connection, with a smaller read buffer.

Private: `asyncio.sslproto.SSLProtocol` (subclassed for its `max_size`), its constructor and
`_app_transport`, and the steps of `BaseEventLoop.start_tls` (Python 3.11), copied because
`start_tls` offers no way to choose the protocol class. The contract test compares the source
of `start_tls` with the one this copy was made from.
"""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto

__all__ = ["SHUTDOWN_TIMEOUT", "start_tls"]

# How long a TLS close_notify exchange may take before the socket is simply dropped: a peer that
# stops reading must not hold a closed connection's socket for asyncio's default 30 s.
SHUTDOWN_TIMEOUT = 5.0


class _SSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 64 KiB read buffer instead of 256 KiB.

    The buffer is allocated per connection and was most of an idle connection's memory:
    measured over 200 connections with a stream each, about 340 KB a connection with 256 KiB
    and 145 KB with 64 KiB. jobd reads only small requests, so nothing is lost.
    """

    max_size = 64 * 1024


async def start_tls(
    transport: asyncio.Transport,
    protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    *,
    handshake_timeout: float,
) -> asyncio.Transport | None:
    """`loop.start_tls(server_side=True)` step for step as in Python 3.11, with _SSLProtocol."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):  # another loop (uvloop) has its own TLS
        return await loop.start_tls(
            transport,
            protocol,
            context,
            server_side=True,
            ssl_handshake_timeout=handshake_timeout,
            ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
    waiter = loop.create_future()
    tls = _SSLProtocol(
        loop,
        protocol,
        context,
        waiter,
        server_side=True,
        call_connection_made=False,
        ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]  # (typeshed: int)
        ssl_shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    transport.pause_reading()  # so that nothing reaches the TLS protocol before connection_made
    transport.set_protocol(tls)
    made = loop.call_soon(tls.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return tls._app_transport
