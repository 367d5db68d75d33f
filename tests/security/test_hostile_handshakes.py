"""Connections that never finish a TLS handshake: they hold handshake places, which newcomers take.

Before, 1,000 TCP connections that never sent a ClientHello locked every user out until they
were given up. Now handshakes in progress have their own bound (`--max-handshakes`), a new
connection past it takes the place of the oldest handshake, established connections keep their
share, and the handshake deadline shortens while places are scarce.
"""

from __future__ import annotations

import contextlib
import socket

from hostilehelp import fd_count, rss_kib, wait_until
from jobdhelp import Connect, JobdLauncher

from jobservice.api.connections import PRESSED_HANDSHAKE_TIMEOUT
from jobservice.api.v1 import jobservice_pb2 as pb

MIB = 1 << 10  # in KiB, as rss_kib counts


def silent_connections(target: str, count: int) -> list[socket.socket]:
    """`count` TCP connections to `target` that will never send a byte."""
    host, port = target.rsplit(":", 1)
    sockets = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            sockets.append(socket.create_connection((host, int(port)), timeout=5))
    return sockets


async def test_connections_that_never_handshake_lock_no_one_out(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-connections=60", "--max-handshakes=10")
    bob = await connect(server, "bob")  # established before the flood
    await bob.List(pb.ListRequest())
    baseline_fds, baseline_rss = fd_count(server.pid), rss_kib(server.pid)
    flood = silent_connections(server.target, 300)  # five times every place there is
    try:
        assert len(flood) == 300
        # jobd holds at most its handshake places of them; the rest it has let go.
        assert await wait_until(lambda: fd_count(server.pid) <= baseline_fds + 10 + 2, 10)
        alice = await connect(server, "alice")  # a newcomer gets in
        assert (await alice.List(pb.ListRequest())).jobs is not None
        assert (await bob.List(pb.ListRequest())).jobs is not None  # and bob keeps his
        assert rss_kib(server.pid) - baseline_rss < 16 * MIB
    finally:
        for sock in flood:
            sock.close()
    server.wait_for_log(r"over half of the 10 handshake places taken")


async def test_handshakes_get_a_shorter_deadline_while_places_are_scarce(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-handshakes=10", "--handshake-timeout=60")
    flood = silent_connections(server.target, 6)  # over half the places
    late = silent_connections(server.target, 1)[0]
    try:
        late.settimeout(PRESSED_HANDSHAKE_TIMEOUT + 20)  # far less than the 60 s configured
        with contextlib.suppress(ConnectionResetError):
            assert late.recv(1) == b""  # closed by jobd at the shorter deadline
        alice = await connect(server, "alice")
        assert (await alice.List(pb.ListRequest())).jobs is not None
    finally:
        for sock in (*flood, late):
            sock.close()
