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
    H2Protocol.processor, EventsProcessor   count requests in service, see resets by either
      .register/.process/.processors/         side, drop empty DATA frames, ignore events
      .process_data_received/                 grpclib has no handler for (unknown frames),
      .process_stream_ended/                  and the close for an HTTP/2 protocol error
      .process_stream_reset/.streams/
      .close("Protocol error"), Connection.ack
    server Handler.accept/._tasks           release a stream however its task ends
    H2Protocol.connection.data_sent         DATA bytes sent (earns a client frame budget)
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
from h2.events import DataReceived, StreamEnded, StreamReset
from h2.events import Event as H2Event

__all__ = [
    "ProtocolChannel",
    "ServerBase",
    "channel_protocol",
    "connect",
    "data_sent",
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
        handler = _ReleasingHandler(
            self._mapping, self._codec, self._status_details_codec, self.__dispatch__
        )
        self._handlers.add(handler)
        return handler, self._config, self._h2_config


class _ReleasingHandler(Handler):
    """grpclib's request Handler, releasing each stream however its task ends.

    grpclib releases a stream in the `finally` of the task serving it; a task cancelled before
    its first step (its stream reset in the same read that opened it: "MadeYouReset") never
    runs that `finally`, and the stream stayed in the connection's table for good.
    """

    def accept(self, stream: H2Stream, headers: Any, release_stream: Callable[[], Any]) -> None:
        released = False

        def release_once(*_: object) -> None:
            nonlocal released
            if not released:
                released = True
                release_stream()

        super().accept(stream, headers, release_once)
        self._tasks[stream].add_done_callback(release_once)


def data_sent(protocol: H2Protocol) -> int:
    """DATA bytes sent on the connection so far (grpclib's own count)."""
    sent: int = protocol.connection.data_sent
    return sent


def watch_streams(
    protocol: H2Protocol,
    *,
    on_change: Callable[[int], None],
    on_reset: Callable[[], None],
    on_protocol_error: Callable[[], None],
) -> None:
    """Report `protocol`'s requests in service on every change, reset streams, protocol errors.

    A request is in service from its last byte (the client's END_STREAM) until its handler ends
    or its stream is reset: a stream opened and left unfinished, or reset before its handler
    ran, is not. `on_reset` is called for a stream reset while the server was still working on
    it, by the client or by h2 for the client's protocol error on it (both cost the same);
    `on_protocol_error` when grpclib closes the connection because h2 refused what the client
    sent (grpclib only logs that at debug level).
    Call right after `connection_made`, before any data is processed.
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
    """grpclib's HTTP/2 event processor, reporting requests in service and reset streams."""

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
        self._serving: set[int] = set()

    def process(self, event: H2Event) -> None:
        # RFC 9113 says to ignore frames of unknown types (h2 reports those, and ALTSVC, as
        # events); grpclib raised NotImplementedError for them, dropping the connection with a
        # traceback in jobd's log per frame: a client could fill the log at will.
        known = getattr(self, "processors", None)  # deleted once the connection is closed
        if known is None or type(event) in known:
            super().process(event)

    def register(self, stream: H2Stream) -> Callable[[], None]:
        release = super().register(stream)
        stream_id = stream.id

        def release_and_count() -> None:
            release()
            self._stop_serving(stream_id)

        return release_and_count

    def process_data_received(self, event: DataReceived) -> None:
        if event.data:
            super().process_data_received(event)
        elif event.flow_controlled_length:  # padding only: give the window back, keep nothing
            self.connection.ack(event.stream_id, event.flow_controlled_length)
        # An empty frame is no data; grpclib would queue an entry per frame, unread, for ever.

    def process_stream_ended(self, event: StreamEnded) -> None:
        super().process_stream_ended(event)
        if event.stream_id in self.streams:
            self._serving.add(event.stream_id)
            self._on_change(len(self._serving))

    def process_stream_reset(self, event: StreamReset) -> None:
        if event.stream_id in self.streams:
            self._on_reset()
            self._stop_serving(event.stream_id)
        super().process_stream_reset(event)

    def close(self, reason: str = "Connection closed") -> None:
        if reason == PROTOCOL_ERROR_REASON:
            self._on_protocol_error()
        super().close(reason)

    def _stop_serving(self, stream_id: int | None) -> None:
        if stream_id in self._serving:
            self._serving.discard(stream_id)
            self._on_change(len(self._serving))


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
