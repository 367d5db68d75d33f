"""Contracts of the upstream internals `jobservice._upstream` relies on: one test per internal.

Each fails, naming the internal, when an upgrade of grpclib, h2, hyperframe, asyncio or CPython
moves it, so an upgrade breaks here and not somewhere in jobd. Behaviour is checked on real
objects (a real grpclib server and channel on loopback, a real SSLContext) where that is cheap;
where the internal is a copied procedure, its upstream source is compared with the copy's.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.protocol import Buffer, Connection, EventsProcessor, H2Protocol, Peer
from grpclib.protocol import Stream as H2Stream
from grpclib.server import Handler as ServerHandler
from grpclib.server import Server, Stream, request_handler
from h2.connection import H2Connection
from hyperframe.frame import DataFrame, Frame

from jobservice._upstream import grpclib_h2, openssl
from jobservice._upstream.asyncio_tls import start_tls
from jobservice._upstream.hyperframe import quiet_data_frame_repr

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.mark.parametrize("project", ["grpclib", "h2", "hyperframe"])
def test_the_installed_versions_are_the_pinned_ones(project: str) -> None:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = [d.split(";")[0].strip() for d in dependencies if d.startswith(f"{project}==")]
    assert pins == [f"{project}=={version(project)}"], f"{project} must be pinned exactly"


# --- hyperframe ------------------------------------------------------------------------------


def test_frame_repr_goes_through_body_repr_and_the_patch_replaces_it() -> None:
    assert "_body_repr" in Frame.__dict__, "hyperframe: Frame._body_repr is gone"
    assert "_body_repr" in inspect.getsource(Frame.__repr__), "Frame.__repr__ changed"
    had_own = "_body_repr" in DataFrame.__dict__
    before = DataFrame.__dict__.get("_body_repr")
    try:
        quiet_data_frame_repr()
        text = repr(DataFrame(1, data=b"\xab" * 65536))
        assert "<65536 bytes of data>" in text
        assert "abab" not in text
    finally:
        if had_own:
            DataFrame._body_repr = before  # type: ignore[method-assign, assignment]
        else:
            del DataFrame._body_repr


def test_h2_still_builds_a_repr_of_every_frame_it_receives() -> None:
    # If this fails, h2 stopped formatting frames eagerly: the patch may no longer be needed.
    assert "repr(frame)" in inspect.getsource(H2Connection._receive_frame)


# --- asyncio (the copied start_tls) ----------------------------------------------------------

# The statements of BaseEventLoop.start_tls (3.11) that `asyncio_tls.start_tls` repeats.
_START_TLS_STEPS = (
    "waiter = self.create_future()",
    "ssl_protocol = sslproto.SSLProtocol(",
    "call_connection_made=False)",
    "transport.pause_reading()",
    "transport.set_protocol(ssl_protocol)",
    "conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)",
    "resume_cb = self.call_soon(transport.resume_reading)",
    "await waiter",
    "transport.close()",
    "conmade_cb.cancel()",
    "resume_cb.cancel()",
    "return ssl_protocol._app_transport",
)


def test_start_tls_still_takes_the_steps_the_copy_takes() -> None:
    source = inspect.getsource(asyncio.BaseEventLoop.start_tls)
    lines = [line.strip() for line in source.splitlines()]
    positions = []
    for step in _START_TLS_STEPS:
        assert step in lines, f"asyncio's start_tls changed: {step!r} is gone; re-copy it"
        positions.append(lines.index(step))
    assert positions == sorted(positions), "asyncio's start_tls reordered its steps; re-copy it"


def test_ssl_protocol_takes_the_arguments_and_buffer_size_the_copy_uses() -> None:
    from asyncio import sslproto  # noqa: PLC0415

    parameters = inspect.signature(sslproto.SSLProtocol.__init__).parameters
    for name in ("call_connection_made", "ssl_handshake_timeout", "ssl_shutdown_timeout"):
        assert name in parameters, f"SSLProtocol() no longer takes {name}"
    assert isinstance(sslproto.SSLProtocol.max_size, int), "SSLProtocol.max_size is gone"
    init = inspect.getsource(sslproto.SSLProtocol.__init__)
    assert "bytearray(self.max_size)" in init, "the read buffer is no longer sized by max_size"
    assert "_app_transport" in inspect.getsource(sslproto.SSLProtocol), "_app_transport is gone"


async def test_the_copied_start_tls_is_still_used_by_the_default_loop() -> None:
    # uvloop (or any other loop) gets the public loop.start_tls instead.
    assert isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)
    assert inspect.iscoroutinefunction(start_tls)


# --- CPython ssl / OpenSSL -------------------------------------------------------------------


def test_the_ssl_ctx_pointer_sits_after_the_object_header() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert openssl.ssl_ctx_pointer(context)  # raises UpstreamChanged if the layout moved


def test_openssl_calls_take_effect_on_the_context() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert openssl.set_ciphersuites(context, "TLS_AES_256_GCM_SHA384")
    tls13 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.3"]
    assert tls13 == ["TLS_AES_256_GCM_SHA384"]
    assert openssl.set_sigalgs_list(context, "ecdsa_secp384r1_sha384")
    assert openssl.private_key_group(context) in ("", None)  # no key loaded


# --- grpclib and h2 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["_mapping", "_codec", "_status_details_codec", "__dispatch__", "_handlers"]
)
async def test_server_keeps_what_protocol_args_reads(name: str) -> None:
    assert hasattr(Server([]), name), f"grpclib Server.{name} is gone"


def test_server_close_and_wait_closed_use_the_listener_adopted() -> None:
    for method in (Server.close, Server.wait_closed):
        source = inspect.getsource(method)
        assert "self._server" in source, method
        assert "self._server_closed_fut" in source, method


def test_channel_builds_protocols_in_protocol_factory() -> None:
    assert "_protocol_factory" in inspect.getsource(Channel._create_connection)
    assert inspect.iscoroutinefunction(Channel.__connect__)


def test_a_truncated_request_is_signalled_by_buffer_with_assertion_error() -> None:
    assert "raise AssertionError" in inspect.getsource(Buffer.read)


def test_peer_keeps_its_transport() -> None:
    assert "self._transport = transport" in inspect.getsource(Peer.__init__)


def test_events_processor_hooks_exist() -> None:
    hooks = ("register", "process", "process_data_received", "process_stream_ended", "close")
    for name in (*hooks, "process_stream_reset"):
        assert callable(getattr(EventsProcessor, name, None)), f"EventsProcessor.{name} is gone"
    assert "self.processors = {" in inspect.getsource(EventsProcessor.__init__)
    assert "del self.processors" in inspect.getsource(EventsProcessor.close)


def test_handler_keeps_each_streams_task_and_releases_in_its_finally() -> None:
    assert "self._tasks[stream] = " in inspect.getsource(ServerHandler.accept)
    assert "release_stream()" in inspect.getsource(request_handler).split("finally:")[-1]


def test_connection_counts_data_sent_and_acks_received_data() -> None:
    assert "self.connection.data_sent += " in inspect.getsource(H2Stream.send_data)
    assert callable(getattr(Connection, "ack", None)), "Connection.ack is gone"


def test_a_protocol_error_closes_the_processor_with_the_reason_watched_for() -> None:
    source = inspect.getsource(H2Protocol.data_received)
    assert f"self.processor.close('{grpclib_h2.PROTOCOL_ERROR_REASON}')" in source


class _Echo:
    """One unary method that reads its request through the adapter, as jobd's dispatch does."""

    def __init__(self) -> None:
        self.transports: list[asyncio.BaseTransport] = []

    def __mapping__(self) -> dict[str, Handler]:
        return {"/t.T/Echo": Handler(self.echo, Cardinality.UNARY_UNARY, None, None)}

    async def echo(self, stream: Stream[Any, Any]) -> None:
        self.transports.append(grpclib_h2.stream_transport(stream))
        header = await grpclib_h2.recv_exactly(stream, 5)
        body = await grpclib_h2.recv_exactly(stream, int.from_bytes(header[1:], "big"))
        # A status with a message, not a reply: the client sees what the server read.
        await stream.send_trailing_metadata(status=Status.NOT_FOUND, status_message=body.decode())


class _RawCodec:
    """Bytes in and out: requests reach `recv_exactly` as the client wrote them."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        assert isinstance(message, bytes)
        return message

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


async def test_channel_server_and_processor_internals_on_a_real_connection() -> None:
    echo = _Echo()
    server = grpclib_h2.ServerBase([echo], codec=_RawCodec())  # type: ignore[arg-type]
    counts: list[int] = []

    def new_protocol() -> H2Protocol:
        protocol = _Watched(*server.protocol_args())
        protocol.counts = counts
        return protocol

    loop = asyncio.get_running_loop()
    listener = await loop.create_server(new_protocol, "127.0.0.1", 0)
    server.adopt_listener(listener)
    port = listener.sockets[0].getsockname()[1]
    channel = grpclib_h2.ProtocolChannel("127.0.0.1", port, codec=_RawCodec())  # type: ignore[arg-type]
    try:
        protocol = await grpclib_h2.connect(channel)
        assert grpclib_h2.channel_protocol(channel) is protocol
        assert isinstance(grpclib_h2.h2_connection(protocol), H2Connection)
        request = channel.request("/t.T/Echo", Cardinality.UNARY_UNARY, bytes, bytes)
        async with request as call:
            await call.send_message(b"hello", end=True)
            with pytest.raises(GRPCError) as answered:
                await call.recv_message()
        assert (answered.value.status, answered.value.message) == (Status.NOT_FOUND, "hello")
        assert echo.transports
        assert echo.transports[0].get_extra_info("peername")
        assert counts[:2] == [1, 0], "watch_streams saw the stream open and close"
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


class _Watched(H2Protocol):
    counts: list[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        grpclib_h2.watch_streams(
            self,
            on_change=self.counts.append,
            on_reset=lambda: None,
            on_protocol_error=lambda: None,
        )
