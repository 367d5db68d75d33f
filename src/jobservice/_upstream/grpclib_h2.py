"""The internals of grpclib (and of the h2 connection inside it) that jobd and its client use.

grpclib has no public hook for any of these; each is used for a reason given where it is used
(api/client.py, api/connections.py, api/dispatch.py), and each is pinned by a contract test.

    Channel.__connect__, ._protocol         connect eagerly; find the connection to close
    Channel._protocol_factory, ._config,    build our own client protocol (larger frames,
      ._h2_config                             coalesced writes, "settings agreed" signal)
    Server._server, ._server_closed_fut,    serve connections that jobd accepted, handshook
      ._mapping, ._codec, ._handlers,         and gated itself
      ._status_details_codec, .__dispatch__,
      .__gc_step__, ._config, ._h2_config
    H2Protocol.connection._connection       the h2 H2Connection (settings, GOAWAY)
    H2Protocol.processor, EventsProcessor   count open streams, see client resets and the
      .register/.process_stream_reset/        close for an HTTP/2 protocol error
      .streams/.close("Protocol error")
    server Stream._stream.recv_data          read a request with a bound on its size
      (Buffer raises AssertionError when the stream ends mid-read)
    server Stream.peer._transport            the TLS object whose certificate names the caller
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from grpclib.client import Channel
from grpclib.client import Handler as ClientHandler
from grpclib.config import Configuration
from grpclib.protocol import EventsProcessor, H2Protocol
from grpclib.protocol import Stream as H2Stream
from grpclib.server import Handler, Server, Stream
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import StreamReset

__all__ = [
    "ProtocolChannel",
    "ServerBase",
    "channel_protocol",
    "connect",
    "h2_connection",
    "recv_exactly",
    "stream_transport",
    "watch_streams",
]


def h2_connection(protocol: H2Protocol) -> H2Connection:
    """The h2 connection object a grpclib protocol drives (settings, GOAWAY, frame size)."""
    connection: H2Connection = protocol.connection._connection
    return connection


def channel_protocol(channel: Channel) -> H2Protocol | None:
    """The protocol of the channel's connection, if it has one."""
    protocol: H2Protocol | None = channel._protocol
    return protocol


async def connect(channel: Channel) -> H2Protocol:
    """Open the channel's connection now (grpclib otherwise connects on the first call)."""
    protocol: H2Protocol = await channel.__connect__()
    return protocol


class ProtocolChannel(Channel):
    """A grpclib Channel whose connections are `protocol_class` instances."""

    protocol_class: ClassVar[type[H2Protocol]] = H2Protocol

    def _protocol_factory(self) -> H2Protocol:
        return self.protocol_class(ClientHandler(), self._config, self._h2_config)


class ServerBase(Server):
    """grpclib's Server, for a subclass that accepts connections and builds protocols itself."""

    def adopt_listener(self, listener: asyncio.Server) -> None:
        """Make `listener` this server's, as `Server.start` would, so close/wait_closed work."""
        self._server = listener
        self._server_closed_fut = asyncio.get_running_loop().create_future()

    def protocol_args(self) -> tuple[Handler, Configuration, H2Configuration]:
        """What a server-side H2Protocol is built from: a new request handler and the configs."""
        self.__gc_step__()
        handler = Handler(self._mapping, self._codec, self._status_details_codec, self.__dispatch__)
        self._handlers.add(handler)
        return handler, self._config, self._h2_config


def watch_streams(
    protocol: H2Protocol,
    *,
    on_change: Callable[[int], None],
    on_reset: Callable[[], None],
    on_protocol_error: Callable[[], None],
) -> None:
    """Report `protocol`'s open-stream count on every change, client resets, protocol errors.

    Call right after `connection_made`, before any data is processed. `on_reset` is called
    for a stream the client reset while the server was still working on it;
    `on_protocol_error` when grpclib closes the connection because h2 refused what the client
    sent (grpclib only logs that at debug level).
    """
    protocol.processor = _WatchedProcessor(
        protocol.handler,
        protocol.connection,
        on_change=on_change,
        on_reset=on_reset,
        on_protocol_error=on_protocol_error,
    )


# The reason grpclib's H2Protocol.data_received gives the processor when h2 raises.
PROTOCOL_ERROR_REASON = "Protocol error"


class _WatchedProcessor(EventsProcessor):
    """grpclib's HTTP/2 event processor, reporting open-stream counts and client resets."""

    def __init__(
        self,
        *args: Any,
        on_change: Callable[[int], None],
        on_reset: Callable[[], None],
        on_protocol_error: Callable[[], None],
    ) -> None:
        super().__init__(*args)
        self._on_change = on_change
        self._on_reset = on_reset
        self._on_protocol_error = on_protocol_error

    def register(self, stream: H2Stream) -> Callable[[], None]:
        release = super().register(stream)
        self._on_change(len(self.streams))

        def release_and_count() -> None:
            release()
            self._on_change(len(self.streams))

        return release_and_count

    def process_stream_reset(self, event: StreamReset) -> None:
        if event.remote_reset and event.stream_id in self.streams:
            self._on_reset()  # a stream the server was still working on
        super().process_stream_reset(event)

    def close(self, reason: str = "Connection closed") -> None:
        if reason == PROTOCOL_ERROR_REASON:
            self._on_protocol_error()
        super().close(reason)


def stream_transport(stream: Stream[Any, Any]) -> asyncio.BaseTransport:
    """The transport of a call's connection (grpclib's Peer shows only the decoded cert)."""
    transport: asyncio.BaseTransport = stream.peer._transport
    return transport


async def recv_exactly(stream: Stream[Any, Any], size: int) -> bytes:
    """The call's next `size` request bytes; b"" if it ended first; EOFError if it ended midway."""
    try:
        data: bytes = await stream._stream.recv_data(size)
    except AssertionError:  # grpclib's Buffer: "Received less data than expected"
        raise EOFError("the request stream ended inside a message") from None
    return data
