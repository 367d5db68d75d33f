"""The one way clients connect to jobd: strict mutual TLS, checked before the first RPC."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import cast

from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.protocol import H2Protocol
from h2.settings import SettingCodes

from jobservice._upstream import grpclib_h2
from jobservice.address import parse_address
from jobservice.api.coalesce import CoalescingTransport
from jobservice.api.errors import ConnectError, ConnectFailure
from jobservice.security import tls
from jobservice.security.errors import SecurityError, TLSPolicyError

__all__ = ["close_channel", "open_channel"]

# Output streams are the bulk of the traffic and the grpclib client is the slow end. Measured
# on loopback (one 200 MB job output): large windows keep the server from stalling on
# WINDOW_UPDATEs, and 64 KiB frames (a quarter as many as with the 16 KiB default) mean fewer
# h2 events per byte; together about +20%. Frames of 256 KiB and more were much slower, as h2
# reassembles a frame by concatenating the TLS reads.
_CONNECTION_WINDOW = 64 << 20
_STREAM_WINDOW = 16 << 20
_MAX_FRAME_SIZE = 64 << 10
_RESET_DETAIL = "reset before the TLS handshake ended; the server may be at its connection limit"


# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH (x509_vfy.h).
_NAME_MISMATCH_CODES = (62, 64)


async def open_channel(
    target: str, *, ca: Path, cert: Path, key: Path, connect_timeout: float = 10.0
) -> Channel:
    """A connected channel whose TLS session has passed the policy check; else ConnectError.

    The connection is opened now rather than on the first RPC, so that every failure (refused,
    untrusted server, our certificate rejected, a session outside the policy) surfaces here with
    a precise reason instead of as an obscure RPC error.
    """
    try:
        host, port = parse_address(target)
    except ValueError as exc:
        raise ConnectError(target, ConnectFailure.INVALID_TARGET, str(exc)) from None
    try:
        context = tls.client_context(ca=ca, cert=cert, key=key)
    except SecurityError as exc:
        raise ConnectError(target, ConnectFailure.CREDENTIALS, str(exc)) from None
    channel = _TunedChannel(host, port, ssl=context, config=_client_config())
    try:
        async with asyncio.timeout(connect_timeout):
            try:
                await _establish(channel, target)
            except ConnectError as exc:
                if exc.reason is not ConnectFailure.NAME_MISMATCH:
                    raise
                names = await _certificate_names(host, port, context)
                raise ConnectError(target, exc.reason, names) from None
    except TimeoutError:
        channel.close()
        raise ConnectError(target, ConnectFailure.TIMEOUT, f"after {connect_timeout:g} s") from None
    except BaseException:
        channel.close()
        raise
    return channel


async def _certificate_names(host: str, port: int, context: ssl.SSLContext) -> str:
    """The names the server's certificate is for, to explain a name mismatch; "" if unknown.

    A second handshake, verified against the CA as always but not against the name: only the
    error path pays for it, and it tells the user which names would work.
    """
    context.check_hostname = False  # this context is not used for anything else after this
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except OSError:
        return ""
    peer = writer.get_extra_info("peercert") or {}
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    names = [str(value) for _, value in peer.get("subjectAltName", ())]
    return f"it is for {', '.join(names)}" if names else ""


async def close_channel(channel: Channel, within: float = 5.0) -> None:
    """Close `channel` and wait (up to `within` seconds) until its connection is really gone.

    `Channel.close()` only starts closing: asyncio finishes a TLS shutdown in the background,
    so a caller that then closes its event loop would leak the socket.
    """
    protocol = grpclib_h2.channel_protocol(channel)
    channel.close()
    if isinstance(protocol, _TunedProtocol):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await protocol.wait_closed()


async def _establish(channel: _TunedChannel, target: str) -> None:
    """Connect, check the negotiated session, and wait for the server's first HTTP/2 bytes."""
    try:
        protocol = await grpclib_h2.connect(channel)
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code in _NAME_MISMATCH_CODES:
            raise ConnectError(target, ConnectFailure.NAME_MISMATCH, exc.verify_message) from None
        raise ConnectError(target, ConnectFailure.TLS_VERIFY, exc.verify_message) from None
    except ssl.SSLError as exc:
        raise ConnectError(target, ConnectFailure.TLS_HANDSHAKE, _ssl_reason(exc)) from None
    except ConnectionRefusedError:
        raise ConnectError(target, ConnectFailure.REFUSED) from None
    except ConnectionResetError:
        # jobd drops a connection over its limit before any TLS work, so this is what it looks
        # like from here; the server was reached, so "unreachable" would mislead.
        raise ConnectError(target, ConnectFailure.REJECTED, _RESET_DETAIL) from None
    except OSError as exc:
        raise ConnectError(target, ConnectFailure.UNREACHABLE, exc.strerror or str(exc)) from None
    assert isinstance(protocol, _TunedProtocol)
    try:
        tls.check_negotiated(protocol.ssl_object())
    except TLSPolicyError as exc:
        raise ConnectError(target, ConnectFailure.POLICY, str(exc)) from None
    # In TLS 1.3 the server verifies our certificate after our side of the handshake is done,
    # so a rejection only shows as the connection closing: wait until the server has answered
    # our SETTINGS (which also makes the larger frame size safe to use, see `_TunedProtocol`).
    if not await protocol.wait_ready():
        raise ConnectError(target, ConnectFailure.REJECTED, protocol.lost_reason)


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's short reason (e.g. TLSV1_ALERT_PROTOCOL_VERSION) or the whole message."""
    return str(exc.reason) if exc.reason else str(exc)


def _client_config() -> Configuration:
    return Configuration(
        http2_connection_window_size=_CONNECTION_WINDOW,
        http2_stream_window_size=_STREAM_WINDOW,
    )


class _TunedProtocol(H2Protocol):
    """grpclib's client protocol, plus larger frames and a signal for "settings agreed".

    h2 applies an acknowledged MAX_FRAME_SIZE to its frame parser only at the start of the
    next `receive_data`, so a large frame arriving in the same read as the acknowledgement
    would be refused as a protocol error. Not issuing any call until the acknowledgement has
    been processed rules that out: until then the server has nothing to send.
    """

    _transport: asyncio.BaseTransport
    _ready: asyncio.Event
    _lost = False
    lost_reason = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()
        # Our WINDOW_UPDATEs and a call's HEADERS and DATA go out as one TLS record per loop
        # iteration rather than one per frame.
        coalescing = CoalescingTransport(cast(asyncio.Transport, transport))  # uvloop's too
        super().connection_made(cast(asyncio.Transport, coalescing))
        # grpclib has no setting for this; h2's own connection object takes it.
        grpclib_h2.h2_connection(self).update_settings(
            {SettingCodes.MAX_FRAME_SIZE: _MAX_FRAME_SIZE}
        )
        self.connection.flush()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if grpclib_h2.h2_connection(self).max_inbound_frame_size == _MAX_FRAME_SIZE:
            self._ready.set()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._ready.is_set():
            self._lost = True
            self.lost_reason = _describe_loss(exc)
            self._ready.set()
        self._closed.set()
        super().connection_lost(exc)

    def ssl_object(self) -> ssl.SSLObject:
        ssl_obj = self._transport.get_extra_info("ssl_object")
        if not isinstance(ssl_obj, ssl.SSLObject):
            raise TLSPolicyError("the connection is not protected by TLS")
        return ssl_obj

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def wait_ready(self) -> bool:
        """True once the server has acknowledged our settings; False if it closed first."""
        await self._ready.wait()
        return not self._lost


def _describe_loss(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLError):
        return _ssl_reason(exc)
    return str(exc) if exc else ""


class _TunedChannel(grpclib_h2.ProtocolChannel):
    """A grpclib Channel that builds `_TunedProtocol` connections."""

    protocol_class = _TunedProtocol
