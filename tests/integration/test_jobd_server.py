"""jobd as an operator runs it: start-up refusals, audit lines, handshake timeout, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from jobdhelp import (
    Connect,
    Jobd,
    JobdLauncher,
    credentials,
    first_line_number,
    following,
    jobd_command,
    pid_exists,
    read_output,
    status_of,
    wait_gone,
)

from jobservice.api import ConnectError, ConnectFailure, close_channel, open_channel
from jobservice.api.v1 import jobservice_pb2 as pb


def run_jobd(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*jobd_command(), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


async def job_pid(connect: Connect, server: Jobd, job_id: int) -> int:
    """The pid a job printed as its first line (`echo $$; exec ...`)."""
    return await first_line_number(await connect(server, "alice"), job_id)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_shutdown_stops_jobs_ends_streams_and_exits_0(
    jobd_launcher: JobdLauncher, connect: Connect, signum: int
) -> None:
    server = jobd_launcher.start("--stop-grace", "5")
    alice = await connect(server, "alice")
    job_id = (
        await alice.Start(pb.StartRequest(command="sh", args=["-c", "echo $$; exec sleep 60"]))
    ).job_id
    pid = await job_pid(connect, server, job_id)
    assert pid_exists(pid)
    follower = await following(alice, job_id)  # the stream is open, waiting for live output
    os.kill(server.pid, signum)
    output = await asyncio.wait_for(follower, 15)
    assert output.final is not None, "the stream ends with the job's final status"
    assert output.final.signal == signal.SIGTERM  # the normal stop procedure, not a SIGKILL
    assert server.process.wait(15) == 0
    assert wait_gone(pid), f"job process {pid} outlived jobd"
    assert "Traceback" not in server.log


async def test_new_calls_during_shutdown_are_unavailable(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--stop-grace", "3")
    alice = await connect(server, "alice")
    script = "trap '' TERM; echo $$; while :; do sleep 0.1; done"
    job_id = (await alice.Start(pb.StartRequest(command="sh", args=["-c", script]))).job_id
    pid = await job_pid(connect, server, job_id)
    os.kill(server.pid, signal.SIGTERM)
    await server.logged("shutting down")
    status, text = await status_of(alice.Status(pb.StatusRequest(job_id=job_id)))
    assert (status, text) == (Status.UNAVAILABLE, "the server is shutting down")
    assert server.process.wait(15) == 0  # the job ignored SIGTERM: SIGKILL after the grace
    assert wait_gone(pid)


async def test_every_call_leaves_an_audit_line(jobd: Jobd, connect: Connect) -> None:
    alice, bob = await connect(jobd, "alice"), await connect(jobd, "bob")
    job_id = (await alice.Start(pb.StartRequest(command="true"))).job_id
    await read_output(alice, job_id)
    await status_of(bob.Stop(pb.StopRequest(job_id=job_id)))
    await status_of(alice.Status(pb.StatusRequest(job_id=777)))
    await bob.List(pb.ListRequest())
    expected = [
        f"audit user=alice rpc=Start job={job_id} result=OK",
        f"audit user=alice rpc=Output job={job_id} result=OK",
        f"audit user=bob rpc=Stop job={job_id} result=PERMISSION_DENIED",
        "audit user=alice rpc=Status job=777 result=NOT_FOUND",
        "audit user=bob rpc=List job=- result=OK",
    ]
    for line in expected:
        await jobd.logged(re.escape(line) + r" peer=127\.0\.0\.1:\d+ ms=[\d.]+")


def test_refuses_to_start_when_the_port_is_taken(
    jobd_launcher: JobdLauncher, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = jobd_launcher.command()[len(jobd_command()) :]
        command[command.index("--listen=127.0.0.1:0")] = f"--listen=127.0.0.1:{port}"
        result = run_jobd(*command)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr


@pytest.mark.parametrize(
    ("policy_text", "message"),
    [
        ("[users.alice\n", "not valid TOML"),
        ('[users.alice]\ngrants = [{ entity = "Everyone", role = "Analyst" }]\n', "Everyone"),
    ],
)
def test_refuses_to_start_with_an_invalid_policy(
    jobd_launcher: JobdLauncher, tmp_path: Path, policy_text: str, message: str
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    result = run_jobd(*jobd_launcher.command("--policy", str(policy))[len(jobd_command()) :])
    assert result.returncode != 0
    assert "invalid policy" in result.stderr
    assert message in result.stderr


def test_refuses_to_start_with_missing_or_mismatched_credentials(
    jobd_launcher: JobdLauncher, pki: Path
) -> None:
    base = jobd_launcher.command()[len(jobd_command()) :]
    missing = run_jobd(*base, f"--key={pki / 'nope.key'}")
    assert missing.returncode != 0
    assert "nope.key" in missing.stderr
    mismatched = run_jobd(*base, f"--key={pki / 'alice.key'}")
    assert mismatched.returncode != 0
    assert "refusing to start" in mismatched.stderr
    assert "does not match" in mismatched.stderr


def test_a_client_that_never_handshakes_is_dropped(jobd_launcher: JobdLauncher) -> None:
    server = jobd_launcher.start("--handshake-timeout", "0.5")
    host, port = server.target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as idle:
        began = time.monotonic()
        try:
            data = idle.recv(1)
        except ConnectionResetError:
            data = b""
        assert data == b""  # closed by the server, not by our timeout
        assert time.monotonic() - began > 0.3  # at the deadline, not before (timeout=10 bounds)


def test_pki_init_writes_a_usable_pki(tmp_path: Path) -> None:
    out = tmp_path / "pki"
    result = run_jobd("pki", "init", "--out", str(out), "--user", "dana", "--user", "eve")
    assert result.returncode == 0, result.stderr
    names = {"server", "dana", "eve"}
    expected = {"ca.pem", "ca-private", *(f"{n}.{e}" for n in names for e in ("pem", "key"))}
    assert {p.name for p in out.iterdir()} == expected
    for key in [*(out / f"{name}.key" for name in names), out / "ca-private" / "ca.key"]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "ca-private").stat().st_mode) == 0o700
    assert "warning: the CA key is in" in result.stderr
    again = run_jobd("pki", "init", "--out", str(out), "--user", "dana")
    assert again.returncode != 0, "an existing PKI is not overwritten without --force"
    bad = run_jobd("pki", "init", "--out", str(tmp_path / "x"), "--user", "../evil")
    assert bad.returncode != 0
    assert "invalid user name" in bad.stderr


def test_help_documents_flags_defaults_and_examples() -> None:
    text = run_jobd("serve", "--help").stdout
    for flag in ("--listen", "--policy", "--data-dir", "--stop-grace", "--handshake-timeout"):
        assert flag in text
    assert "XDG_STATE_HOME" in text
    assert "Examples:" in text


async def test_connections_over_the_limit_are_refused(
    jobd_launcher: JobdLauncher, pki: Path
) -> None:
    server = jobd_launcher.start("--max-connections", "1")
    creds = credentials(pki, "alice")

    async def connect_alice() -> Channel:
        return await open_channel(server.target, ca=creds.ca, cert=creds.cert, key=creds.key)

    first = await connect_alice()
    with pytest.raises(ConnectError) as refused:
        await connect_alice()
    assert refused.value.reason is ConnectFailure.REJECTED
    await server.logged(r"connection limit \(1\) reached")
    await close_channel(first)
    for _ in range(100):  # the server notices the close a moment later
        with contextlib.suppress(ConnectError):
            await close_channel(await connect_alice())
            return
        await asyncio.sleep(0.05)
    pytest.fail("the closed connection's place was never freed")
