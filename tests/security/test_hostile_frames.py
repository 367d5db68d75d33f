"""Frames that cost the server more than the client: server-side resets, empty DATA, control floods.

Each test attacks a real jobd with `RawH2` and checks the defence (GOAWAY `ENHANCE_YOUR_CALM`,
or the connection closed), jobd's memory (RSS from /proc), and that another user is answered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpclib.const import Status
from h2.errors import ErrorCodes
from hostilehelp import RawH2, grpc_frame, rss_kib, wait_until
from hyperframe.frame import (
    DataFrame,
    Frame,
    PingFrame,
    PriorityFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from jobdhelp import Connect, JobdLauncher, credentials, loopback_config

from jobservice.api.h2guard import CONTROL_BURST, RESET_BURST
from jobservice.api.server import JobServer
from jobservice.api.v1 import jobservice_pb2 as pb

MIB = 1 << 10  # in KiB, as rss_kib counts
STATUS_0 = grpc_frame(pb.StatusRequest(job_id=0).SerializeToString())


async def flood(raw: RawH2, one: object, limit: int) -> int:
    """Send `one()`'s frames in rounds of 100 until the server closes or `limit` are sent."""
    sent = 0
    while sent < limit and raw.goaway is None and not raw.closed:
        for _ in range(100):
            one()  # type: ignore[operator]
        sent += 100
        try:
            await raw.flush()
        except (ConnectionError, OSError):
            break
        await raw.pump(0.001)
    await raw.until_closed(10)
    return sent


async def test_made_you_reset_counts_against_the_reset_budget(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect
) -> None:
    """MadeYouReset: a complete call, then a frame that makes h2 reset it for the server."""
    server = jobd_launcher.start()
    bob = await connect(server, "bob")
    await bob.List(pb.ListRequest())
    baseline = rss_kib(server.pid)
    # mallory is in no policy: any certificate from the CA could do this.
    raw = await RawH2.open(server.target, credentials(pki, "mallory"))
    raw.ignore_stream_limit()
    sent = await flood(raw, lambda: raw.made_you_reset("Status", STATUS_0), 20_000)
    assert raw.goaway is not None, f"no GOAWAY after {sent} server-side resets"
    assert raw.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert sent <= 10 * RESET_BURST
    assert (await bob.List(pb.ListRequest())).jobs is not None  # others are served
    grown = rss_kib(server.pid) - baseline
    print(f"MadeYouReset: cut after {sent} streams sent; jobd RSS +{grown} KiB")
    assert grown < 16 * MIB
    server.wait_for_log(r"closing connection from .* \(user mallory\): more than 200 streams reset")


async def test_a_stream_reset_before_its_handler_ran_is_released(pki: Path, tmp_path: Path) -> None:
    """In process, to see grpclib's stream table: nothing stays in it after the resets."""
    server = JobServer(loopback_config(pki, tmp_path))
    host, port = await server.start()
    try:
        raw = await RawH2.open(f"{host}:{port}", credentials(pki, "alice"))
        raw.ignore_stream_limit()
        calls = [raw.made_you_reset("Status", STATUS_0) for _ in range(RESET_BURST // 2)]
        await raw.flush()
        assert await raw.until(lambda: all(raw.streams[c].reset for c in calls), 10)
        (connection,) = server._grpc.connections
        assert await wait_until(lambda: not connection.processor.streams, 5), (
            f"{len(connection.processor.streams)} streams kept after their reset"
        )
        await raw.close()
    finally:
        await server.shutdown()


async def test_streams_reset_by_the_server_do_not_keep_a_connection_open(
    jobd_launcher: JobdLauncher, pki: Path
) -> None:
    server = jobd_launcher.start("--idle-timeout", "1")
    raw = await RawH2.open(server.target, credentials(pki, "alice"))
    raw.ignore_stream_limit()
    for _ in range(RESET_BURST // 2):
        raw.made_you_reset("Status", STATUS_0)
    await raw.flush()
    assert await raw.until_closed(15), "reset streams kept the connection past its idle timeout"
    assert raw.goaway is not None
    assert raw.goaway.error_code == ErrorCodes.NO_ERROR
    server.wait_for_log(r"closing connection from 127\.0\.0\.1:\d+: no request for 1s")


async def test_unfinished_requests_do_not_keep_a_connection_open(
    jobd_launcher: JobdLauncher, pki: Path
) -> None:
    """A stream opened (and never finished) each time the last one timed out, 0.5 s later."""
    server = jobd_launcher.start("--idle-timeout", "2", "--request-timeout", "1")
    raw = await RawH2.open(server.target, credentials(pki, "alice"))
    for _ in range(8):  # 8 x 1.5 s: far past the idle timeout if nothing else closes it
        call = raw.streams[raw.request("Status")]
        await raw.flush()
        if not await raw.until(lambda: call.ended, 10):  # noqa: B023 (used at once)
            break  # closed
        assert call.grpc_status == Status.RESOURCE_EXHAUSTED.value
        if not await raw.pump(0.5):
            break
    else:
        pytest.fail("a trickle of unfinished requests kept the connection past its idle timeout")
    assert raw.goaway is not None
    assert raw.goaway.error_code == ErrorCodes.NO_ERROR


async def test_empty_data_frames_on_an_open_stream_are_cut_off(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect
) -> None:
    """bob (an analyst) follows alice's job and sends empty DATA frames on the open stream."""
    server = jobd_launcher.start()
    alice = await connect(server, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="sleep", args=["30"]))).job_id
    baseline = rss_kib(server.pid)
    raw = await RawH2.open(server.target, credentials(pki, "bob"))
    stream_id = raw.request("Output")
    raw.send(stream_id, grpc_frame(pb.OutputRequest(job_id=job_id).SerializeToString()), end=False)
    await raw.flush()
    assert await raw.until(lambda: bool(raw.streams[stream_id].headers), 10)
    sent = await flood(raw, lambda: raw.send_frame(DataFrame(stream_id, b"")), 200_000)
    assert raw.goaway is not None, f"no GOAWAY after {sent} empty DATA frames"
    assert raw.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert sent <= 2 * CONTROL_BURST
    status = await alice.Status(pb.StatusRequest(job_id=job_id))  # others are served
    assert status.status.state == pb.JOB_STATE_RUNNING
    grown = rss_kib(server.pid) - baseline
    print(f"empty DATA: cut after {sent} frames sent; jobd RSS +{grown} KiB")
    assert grown < 16 * MIB
    server.wait_for_log(r"closing connection from .* \(user bob\): more than 1000 frames")


FLOODS: dict[str, Frame] = {
    "ping": PingFrame(0, b"12345678"),
    "settings": SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}),
    "window-update": WindowUpdateFrame(0, window_increment=1),
    "priority": PriorityFrame(1, depends_on=0, stream_weight=15),
    "unknown-type": PingFrame(0, b"unknown!"),  # retyped below: RFC 9113 says to ignore it
}


@pytest.mark.parametrize("kind", FLOODS)
async def test_control_frame_floods_from_a_client_that_never_reads_are_cut_off(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect, kind: str
) -> None:
    server = jobd_launcher.start()
    bob = await connect(server, "bob")
    await bob.List(pb.ListRequest())
    baseline = rss_kib(server.pid)
    frame = FLOODS[kind].serialize()
    if kind == "unknown-type":
        frame = frame[:3] + b"\xfa" + frame[4:]
    raw = await RawH2.open(server.target, credentials(pki, "mallory"))
    payload = frame * 100
    sent = 0
    # It never reads: acknowledgements pile up on jobd's side unless jobd stops it.
    while sent < 200_000:
        raw.writer.write(payload)
        sent += 100
        try:
            await asyncio.wait_for(raw.writer.drain(), 5)
        except (ConnectionError, OSError, TimeoutError):
            break
    assert sent < 200_000, f"jobd took {sent} {kind} frames"
    assert await raw.until_closed(10)
    assert raw.goaway is None or raw.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert (await bob.List(pb.ListRequest())).jobs is not None  # others are served
    grown = rss_kib(server.pid) - baseline
    print(f"{kind} flood: cut after {sent} frames written; jobd RSS +{grown} KiB")
    assert grown < 16 * MIB
    server.wait_for_log(r"closing connection from .* \(user mallory\): more than 1000 frames")


@pytest.mark.soak
async def test_made_you_reset_at_scale_keeps_jobd_flat(
    jobd_launcher: JobdLauncher, pki: Path, connect: Connect
) -> None:
    """At the finding's scale: 60,000 server-reset streams (before: +456 MiB, all locked out)."""
    server = jobd_launcher.start()
    bob = await connect(server, "bob")
    await bob.List(pb.ListRequest())
    baseline = rss_kib(server.pid)
    total = connections = 0
    while total < 60_000:
        raw = await RawH2.open(server.target, credentials(pki, "mallory"))
        total += await flood(raw, lambda: raw.made_you_reset("Status", STATUS_0), 60_000 - total)  # noqa: B023
        connections += 1
        assert raw.goaway is not None
        await raw.close()
        if connections % 20 == 0:
            assert (await bob.List(pb.ListRequest())).jobs is not None
    grown = rss_kib(server.pid) - baseline
    print(f"MadeYouReset x{total} over {connections} connections: jobd RSS +{grown} KiB")
    assert grown < 64 * MIB
    assert (await bob.List(pb.ListRequest())).jobs is not None
