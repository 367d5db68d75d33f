"""Hostile clients at the connection level: idle, stalling, flooding, resetting, never reading.

Each test runs a real jobd with small deadlines and limits and attacks it with `RawH2` (HTTP/2
by hand over the policy's TLS) or bare sockets; each checks both the defence (the connection
is closed, the call answered, the memory flat) and that jobd keeps serving everyone else.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import grpclib.client
import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from hostilehelp import (
    RawH2,
    fd_count,
    grpc_frame,
    read_until_eof,
    rss_kib,
    tls_connect,
    wait_until,
)
from jobdhelp import Connect, JobdLauncher, credentials, loopback_config, read_output, status_of

from jobservice._upstream.grpclib_h2 import channel_protocol
from jobservice.api import ConnectError, ConnectFailure, close_channel, open_channel
from jobservice.api.h2guard import RESET_BURST
from jobservice.api.server import JobServer
from jobservice.api.v1 import jobservice_pb2 as pb

MIB = 1 << 20


def job_request(job_id: int) -> bytes:
    return grpc_frame(pb.StatusRequest(job_id=job_id).SerializeToString())


async def start(connect: Connect, server: object, *argv: str) -> int:
    stub = await connect(server, "alice")  # type: ignore[arg-type]
    return (await stub.Start(pb.StartRequest(command=argv[0], args=argv[1:]))).job_id


async def test_an_idle_connection_is_closed_with_goaway(
    jobd_launcher: JobdLauncher, pki: Path
) -> None:
    server = jobd_launcher.start("--idle-timeout", "1")
    creds = credentials(pki, "alice")
    began = time.monotonic()
    raw = await RawH2.open(server.target, creds)  # HTTP/2 set up, then nothing
    silent_reader, _ = await tls_connect(server.target, creds)  # TLS only, not one HTTP/2 byte
    assert await raw.until_closed(10)
    assert await read_until_eof(silent_reader, 10)
    assert time.monotonic() - began > 0.8  # not before the idle timeout (no upper bound here:
    assert raw.goaway is not None  # a slow machine is not a failure; until_closed bounds it)
    assert raw.goaway.error_code == ErrorCodes.NO_ERROR  # an orderly close, not an error
    await server.logged(r"closing connection from 127\.0\.0\.1:\d+: no request for 1s")


async def test_an_open_stream_keeps_its_connection_and_clients_reconnect_after(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--idle-timeout", "1")
    alice = await connect(server, "alice")
    start = pb.StartRequest(command="sh", args=["-c", "sleep 2.5; echo late"])
    job_id = (await alice.Start(start)).job_id
    protocol = channel_protocol(alice.Status.channel)
    assert protocol is not None
    handler = protocol.handler
    assert isinstance(handler, grpclib.client.Handler)
    output = await asyncio.wait_for(read_output(alice, job_id), 10)  # open 2.5 s: not idle
    assert output.data() == b"late\n"
    await server.logged(r"no request for 1s")  # then idle, and closed
    assert await wait_until(lambda: handler.connection_lost, 5)  # the client has seen it
    # grpclib's channel opens a new connection for the next call.
    status = (await alice.Status(pb.StatusRequest(job_id=job_id))).status
    assert status.exit_code == 0


async def test_a_request_that_never_arrives_is_answered_resource_exhausted(
    jobd_launcher: JobdLauncher, pki: Path
) -> None:
    server = jobd_launcher.start("--request-timeout", "1")
    raw = await RawH2.open(server.target, credentials(pki, "alice"))
    silent = raw.request("Status")  # headers, then nothing
    output = raw.request("Output")
    partial = raw.request("Start")
    raw.send(partial, grpc_frame(b"\x0a\x05ab", declared=7), end=False)  # 7 bytes promised, 3 sent
    await raw.flush()
    began = time.monotonic()
    calls = (silent, output, partial)
    assert await raw.until(lambda: all(raw.streams[c].ended for c in calls), 10)
    assert time.monotonic() - began > 0.8  # not before the request timeout
    for call in calls:
        assert raw.streams[call].grpc_status == Status.RESOURCE_EXHAUSTED.value
        assert raw.streams[call].grpc_message == "request not received within 1 s (the limit)"
    await server.logged(r"audit user=alice rpc=Status job=- result=RESOURCE_EXHAUSTED")
    await raw.close()


def partial_client_hello(target: str) -> socket.socket:
    """A TCP connection that sent the first bytes of a TLS ClientHello, then stalls."""
    host, port = target.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # record + handshake headers
    return sock


def sees_eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(1 << 16) == b""
    except ConnectionResetError:
        return True


async def test_stalling_clients_cannot_hold_the_connection_places(
    jobd_launcher: JobdLauncher, pki: Path
) -> None:
    server = jobd_launcher.start(
        "--max-connections=4", "--handshake-timeout=1", "--idle-timeout=1", "--request-timeout=1"
    )
    creds = credentials(pki, "alice")
    host, port = server.target.rsplit(":", 1)
    # Four kinds of stalling client take the four places: two before TLS, two after.
    tcp_only = socket.create_connection((host, int(port)), timeout=10)
    half_hello = partial_client_hello(server.target)
    tls_only, _ = await tls_connect(server.target, creds)
    stalled_call = await RawH2.open(server.target, creds)
    stalled_call.request("Status")
    await stalled_call.flush()
    # jobd took the last connection in, so the three before it (accepted in order) too.
    await stalled_call.barrier()
    # Newcomers take the places of the oldest handshakes: the stallers before TLS hold nothing.
    newcomers = [
        await open_channel(server.target, ca=creds.ca, cert=creds.cert, key=creds.key)
        for _ in range(2)
    ]
    for sock in (tcp_only, half_hello):
        with sock:
            assert sees_eof(sock)
    # Now four established connections: the next is refused at once, before any TLS work.
    with pytest.raises(ConnectError) as refused:
        await open_channel(server.target, ca=creds.ca, cert=creds.cert, key=creds.key)
    assert refused.value.reason is ConnectFailure.REJECTED
    assert "reset before the TLS handshake ended" in refused.value.detail  # no TLS work done
    await server.logged(r"refused connection from 127\.0\.0\.1:\d+: connection limit \(4\)")
    for newcomer in newcomers:
        await close_channel(newcomer)
    # Within the deadlines every place is given back without the stallers' help.
    began = time.monotonic()
    channel = None
    while channel is None and time.monotonic() - began < 8:
        try:
            channel = await open_channel(server.target, ca=creds.ca, cert=creds.cert, key=creds.key)
        except ConnectError:
            await asyncio.sleep(0.1)
    assert channel is not None, "the stalling clients kept every place"
    await close_channel(channel)
    assert await stalled_call.until_closed(5)
    assert await read_until_eof(tls_only, 5)


async def test_streams_over_the_per_connection_limit_close_that_connection_only(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect
) -> None:
    server = jobd_launcher.start("--request-timeout", "30")
    bob = await connect(server, "bob")
    baseline = fd_count(server.pid)
    raw = await RawH2.open(server.target, credentials(pki, "alice"))
    for _ in range(100):  # HTTP/2 MAX_CONCURRENT_STREAMS is 100; none sends its request
        raw.request("Status")
    await raw.flush()
    # jobd must have taken the 100 calls in before the 101st stream arrives: read in the same
    # batch as the 101st, h2 refuses them all with the one stream too many (its events for the
    # first 100 are lost with the error), and no call starts, so none is audited.
    await raw.barrier()
    raw.ignore_stream_limit()
    raw.request("Status")  # one more
    await raw.flush()
    assert await raw.until_closed(10), "the connection over its stream limit is closed"
    await server.logged(r"closing connection from .* \(user alice\): HTTP/2 protocol error")
    assert list((await bob.List(pb.ListRequest())).jobs) == []  # others are served
    assert await wait_until(lambda: fd_count(server.pid) <= baseline, 5)
    cancelled = re.compile(r"audit user=alice rpc=Status job=- result=CANCELLED")
    # Every one of the 100 calls started, so every one leaves its audit line.
    assert await wait_until(lambda: len(cancelled.findall(server.log)) == 100, 5), server.log


SOAK = pytest.mark.soak


@pytest.mark.parametrize(
    "timed", [pytest.param(False, id="cut-off"), pytest.param(True, id="timed", marks=SOAK)]
)
async def test_a_rapid_reset_flood_is_cut_off(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect, timed: bool
) -> None:
    """The flooder gets GOAWAY; `timed` (soak tier) also bounds others' latency and jobd's RSS."""
    server = jobd_launcher.start()
    job_id = await start(connect, server, "sleep", "30")
    bob = await connect(server, "bob")
    baseline = rss_kib(server.pid)
    latencies: list[float] = []

    async def probe() -> None:
        while True:
            began = time.monotonic()
            await bob.Status(pb.StatusRequest(job_id=job_id))
            latencies.append(time.monotonic() - began)
            await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe())
    raw = await RawH2.open(server.target, credentials(pki, "alice"))
    request = grpc_frame(pb.OutputRequest(job_id=job_id).SerializeToString())
    sent = 0
    while sent < 20_000 and raw.goaway is None and not raw.closed:
        for _ in range(100):  # open a stream, send its request, cancel it: over and over
            stream_id = raw.request("Output")
            raw.send(stream_id, request)
            raw.reset(stream_id)
        sent += 100
        await raw.flush()
        await raw.pump(0.001)
    await raw.until_closed(5)
    if timed:
        await asyncio.sleep(0.5)  # let the prober measure after the cut-off too
    prober.cancel()
    assert raw.goaway is not None, f"no GOAWAY after {sent} resets"
    assert raw.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert sent < 5000
    assert latencies, "other clients were served during the flood"
    if timed:
        assert max(latencies) < 1.0, "other clients were not slowed"
        assert rss_kib(server.pid) - baseline < 32 * 1024
    await server.logged(r"closing connection from .* \(user alice\): more than 200 streams reset")


async def test_cancelling_calls_at_a_normal_pace_is_not_an_attack(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect
) -> None:
    server = jobd_launcher.start()
    job_id = await start(connect, server, "sleep", "30")
    raw = await RawH2.open(server.target, credentials(pki, "alice"))
    request = grpc_frame(pb.OutputRequest(job_id=job_id).SerializeToString())
    for _ in range(RESET_BURST // 2):  # a client cancelling many of its streams at once
        stream_id = raw.request("Output")
        raw.send(stream_id, request)
        raw.reset(stream_id)
    status_call = raw.request("Status")
    raw.send(status_call, job_request(job_id))
    await raw.flush()
    assert await raw.until(lambda: raw.streams[status_call].ended, 10)
    assert raw.streams[status_call].grpc_status == Status.OK.value
    assert raw.goaway is None
    await raw.close()


async def test_a_client_that_stops_reading_cannot_grow_the_servers_memory(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect
) -> None:
    server = jobd_launcher.start()
    size = 300 * MIB
    job_id = await start(connect, server, "sh", "-c", f"sleep 0.5; head -c {size} /dev/zero")
    # It opens every HTTP/2 window as wide as allowed (2 GiB), then never reads its socket.
    raw = await RawH2.open(server.target, credentials(pki, "alice"), window=2**31 - 1)
    stream_id = raw.request("Output")
    raw.send(stream_id, grpc_frame(pb.OutputRequest(job_id=job_id).SerializeToString()))
    await raw.flush()
    baseline = rss_kib(server.pid)
    alice = await connect(server, "alice")
    peak = 0
    began = time.monotonic()
    while (await alice.Status(pb.StatusRequest(job_id=job_id))).status.state != pb.JOB_STATE_EXITED:
        peak = max(peak, rss_kib(server.pid) - baseline)
        assert time.monotonic() - began < 30, "the job was slowed by the stalled reader"
        await asyncio.sleep(0.05)
    assert peak < 32 * 1024, f"jobd grew by {peak} KiB for a reader that never reads"
    follower = await asyncio.wait_for(read_output(alice, job_id), 30)  # others are served
    assert len(follower.data()) == size
    await raw.close()


async def test_connections_per_user_are_limited(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-connections-per-user", "2")
    await connect(server, "alice")
    await connect(server, "alice")
    with pytest.raises(ConnectError) as refused:
        await connect(server, "alice")
    assert refused.value.reason is ConnectFailure.REJECTED
    await server.logged(r"user alice has 2 connections open \(the per-user limit\)")
    bob = await connect(server, "bob")  # the limit is per user
    assert list((await bob.List(pb.ListRequest())).jobs) == []


async def test_output_streams_per_user_are_limited(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-streams-per-user", "2")
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    job_id = await start(connect, server, "sleep", "30")
    held = [alice.Output.open() for _ in range(2)]
    for stream in held:
        await stream.__aenter__()
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        await asyncio.wait_for(stream.recv_initial_metadata(), 10)
    status, text = await status_of(read_output(alice, job_id))
    assert status is Status.RESOURCE_EXHAUSTED
    assert text == "too many open output streams for alice (limit 2 per user)"
    bob_stream = asyncio.create_task(read_output(bob, job_id))  # bob has his own share
    await alice.Stop(pb.StopRequest(job_id=job_id))
    assert (await asyncio.wait_for(bob_stream, 10)).final is not None
    for stream in held:  # they end with the final status, and their places are given back
        assert [message async for message in stream][-1].HasField("final_status")
        await stream.__aexit__(None, None, None)
    assert (await read_output(alice, job_id)).final is not None


async def test_failed_handshakes_leave_nothing_behind(pki: Path, tmp_path: Path) -> None:
    """In process, to see the server's own bookkeeping: a flood of bad handshakes is forgotten."""
    config = loopback_config(pki, tmp_path, handshake_timeout=0.5)
    server = JobServer(config)
    host, port = await server.start()
    grpc = server._grpc
    try:
        for _ in range(50):  # plaintext, garbage, and silence: three ways to fail a handshake
            for payload in (b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\x01\x00", b""):
                _, writer = await asyncio.open_connection(host, port)
                writer.write(payload)
                writer.close()
        # Each failed handshake ends (the silent ones at the 0.5 s deadline) and is forgotten.
        assert await wait_until(lambda: not grpc.handshakes, 10), grpc.handshakes
        creds = credentials(pki, "alice")
        channel = await open_channel(f"{host}:{port}", ca=creds.ca, cert=creds.cert, key=creds.key)
        await close_channel(channel)
        assert await wait_until(lambda: not grpc.connections, 5)
        grpc.__gc_collect__()
        assert len(grpc._handlers) <= 1, f"{len(grpc._handlers)} handlers kept"
    finally:
        await server.shutdown()
