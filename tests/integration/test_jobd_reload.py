"""SIGHUP on a real jobd: policy, certificate, CRL reloaded; bad files refused; nothing dropped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError
from jobdhelp import Connect, Jobd, JobdLauncher, credentials, jobd_command, status_of
from metricshelp import metrics_url, scrape_until, value

from jobservice.api import ConnectError, JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.security import pki as pkilib
from jobservice.security import tls

ALICE_ONLY = '[users.alice]\ngrants = [{ entity = "self", role = "task-manager" }]\n'
BOB_TOO = ALICE_ONLY + '[users.bob]\ngrants = [{ entity = "all", role = "analyst" }]\n'


def hup(jobd: Jobd, nth: int) -> str:
    """Send SIGHUP and wait for the `nth` reload to finish; the log line that says how."""
    os.kill(jobd.pid, signal.SIGHUP)
    pattern = r"reload complete: policy \w+, tls \w+"
    jobd.wait_for_log(rf"(?s)(?:{pattern}.*){{{nth}}}")
    return [line for line in jobd.log.splitlines() if "reload complete" in line][nth - 1]


async def start_waiting_job(stub: JobServiceStub, fifo: Path) -> int:
    """A job that prints "first", then waits until `fifo` is written to and prints that."""
    script = f"echo first; cat {fifo}"
    response = await stub.Start(pb.StartRequest(command="/bin/sh", args=["-c", script]))
    return response.job_id


async def test_policy_change_applies_while_a_stream_in_flight_goes_on(
    jobd_launcher: JobdLauncher, connect: Connect, tmp_path: Path, job_fifo: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(ALICE_ONLY)
    jobd = jobd_launcher.start(f"--policy={policy}")
    alice = await connect(jobd, "alice")
    fifo = job_fifo
    job = await start_waiting_job(alice, fifo)
    async with alice.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job), end=True)
        first = await stream.recv_message()
        assert first is not None
        assert first.chunk.data == b"first\n"

        bob = await connect(jobd, "bob")
        denied = await status_of(bob.Status(pb.StatusRequest(job_id=job)))
        assert denied[0] is Status.PERMISSION_DENIED
        policy.write_text(BOB_TOO)
        assert "policy reloaded, tls reloaded" in hup(jobd, 1)
        # The connection bob opened before the reload is authorized with the new policy.
        assert (await bob.Status(pb.StatusRequest(job_id=job))).status.job_id == job

        policy.write_text("[users.bob]\ngrants = [{ entity = 'all', role = 'janitor' }]\n")
        assert "policy kept, tls reloaded" in hup(jobd, 2)
        assert "kept the policy in force; the new one is refused" in jobd.log
        assert "janitor" in jobd.log  # the refusal says what is wrong
        assert (await bob.Status(pb.StatusRequest(job_id=job))).status.job_id == job

        with fifo.open("w") as writer:
            writer.write("second\n")
        rest = [message async for message in stream]
    assert [m.chunk.data for m in rest if m.HasField("chunk")] == [b"second\n"]
    assert rest[-1].final_status.exit_code == 0


async def test_a_reloaded_policy_changes_how_new_jobs_run(
    jobd_launcher: JobdLauncher, connect: Connect, tmp_path: Path
) -> None:
    """The policy also holds each user's job settings: they are reloaded with it, or not at all."""
    policy = tmp_path / "policy.toml"
    policy.write_text(ALICE_ONLY)
    jobd = jobd_launcher.start(f"--policy={policy}")
    alice = await connect(jobd, "alice")
    limited = pb.StartRequest(command="/bin/true", limits=pb.ResourceLimits(timeout_seconds=7200))
    assert (await alice.Start(limited)).job_id == 0

    policy.write_text(ALICE_ONLY + 'max_limits = { timeout = "1h" }\n')
    assert "policy reloaded" in hup(jobd, 1)
    refused = await status_of(alice.Start(limited))
    assert refused[0] is Status.INVALID_ARGUMENT
    assert "timeout limit" in refused[1]

    # An account that does not exist refuses the whole policy: the 1 h maximum stays.
    policy.write_text(ALICE_ONLY + 'run_as = "no-such-account-i14"\n')
    assert "policy kept" in hup(jobd, 2)
    assert "no Unix account 'no-such-account-i14'" in jobd.log
    assert (await status_of(alice.Start(limited)))[0] is Status.INVALID_ARGUMENT


def server_pki(pki: Path, into: Path) -> tuple[Path, Path]:
    """A copy of the server's certificate and key that a test may replace."""
    creds = credentials(pki, "server")
    cert, key = into / "server.pem", into / "server.key"
    shutil.copy(creds.cert, cert)
    shutil.copy(creds.key, key)
    return cert, key


def der(certified: pkilib.CertifiedKey) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certified.cert_pem().decode())


def served_certificate(target: str, pki: Path) -> bytes:
    """The DER certificate jobd presents to a new connection (as alice)."""
    creds = credentials(pki, "alice")
    context = tls.client_context(ca=creds.ca, cert=creds.cert, key=creds.key)
    host, port = target.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return der


async def test_a_rotated_certificate_is_served_to_new_connections_only(
    jobd_launcher: JobdLauncher, connect: Connect, pki: Path, tmp_path: Path
) -> None:
    cert, key = server_pki(pki, tmp_path)
    jobd = jobd_launcher.start(f"--cert={cert}", f"--key={key}")
    before = await connect(jobd, "alice")
    assert served_certificate(jobd.target, pki) == ssl.PEM_cert_to_DER_cert(cert.read_text())

    ca_key = next(k for k in (pki / "ca-private" / "ca.key", pki / "ca.key") if k.exists())
    ca = pkilib.load_certified_key(pki / "ca.pem", ca_key)
    fresh = pkilib.issue_certificate(
        ca, "localhost", extended_key_usage=(pkilib.SERVER_AUTH,), hosts=pkilib.SERVER_HOSTS
    )
    cert.unlink()
    key.unlink()
    fresh.write(cert, key)
    assert "tls reloaded" in hup(jobd, 1)
    assert served_certificate(jobd.target, pki) == der(fresh)
    # The connection made before the rotation still works, on its old session.
    assert (await before.List(pb.ListRequest())).jobs == []

    # A key that does not match the certificate is refused; the rotated pair stays in force.
    key.unlink()
    pkilib.write_private_key(key, pkilib.CertifiedKey(fresh.certificate, pkilib.new_key()))
    assert "tls kept" in hup(jobd, 2)
    assert f"key file {key} does not match certificate file {cert}" in jobd.log
    assert served_certificate(jobd.target, pki) == der(fresh)
    assert (await (await connect(jobd, "bob")).List(pb.ListRequest())).jobs == []


def revoke(pki: Path, crl: Path, *names: str) -> None:
    subprocess.run(
        [*jobd_command(), "pki", "revoke", f"--out={pki}", f"--crl={crl}", *names],
        check=True,
        capture_output=True,
    )


async def test_a_revoked_user_is_refused_after_reload_while_others_go_on(
    jobd_launcher: JobdLauncher, connect: Connect, pki: Path, tmp_path: Path, job_fifo: Path
) -> None:
    crl = tmp_path / "crl.pem"
    revoke(pki, crl)  # an empty CRL, signed by the CA
    jobd = jobd_launcher.start(f"--crl={crl}", "--metrics-listen=127.0.0.1:0")
    charlie = await connect(jobd, "charlie")
    bob = await connect(jobd, "bob")
    fifo = job_fifo
    job = await start_waiting_job(charlie, fifo)
    async with charlie.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job), end=True)
        assert (await stream.recv_message()) is not None  # "first"

        revoke(pki, crl, "bob")
        assert "tls reloaded" in hup(jobd, 1)
        jobd.wait_for_log(r"closed connection from \S+ \(user bob\): certificate revoked")
        with pytest.raises(ConnectError):
            await connect(jobd, "bob")
        url = metrics_url(jobd.wait_for_log(r"metrics on \S+").string)
        refused = "jobd_tls_handshakes_refused_total"
        got = scrape_until(url, lambda now: value(now, refused, reason="cert_revoked") == 1)
        assert value(got, refused, reason="cert_revoked") == 1
        # bob's connection was closed; the channel's attempt to connect again fails too.
        with pytest.raises(StreamTerminatedError):
            await bob.List(pb.ListRequest())

        # charlie's stream goes on, and charlie can still connect.
        assert (await (await connect(jobd, "charlie")).List(pb.ListRequest())).jobs
        with fifo.open("w") as writer:
            writer.write("second\n")
        rest = [message async for message in stream]
    assert rest[-1].final_status.exit_code == 0


def test_jobd_refuses_to_start_with_a_crl_its_ca_did_not_sign(
    jobd_launcher: JobdLauncher, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    pkilib.init_pki(other, [])
    crl = tmp_path / "crl.pem"
    revoke(other, crl)
    result = jobd_launcher.refusal(f"--crl={crl}")
    assert result.returncode != 0
    assert f"CRL file {crl} is not signed by a CA of the CA file" in result.stderr


def test_pki_revoke_keeps_earlier_entries(pki: Path, tmp_path: Path) -> None:
    crl = tmp_path / "crl.pem"
    revoke(pki, crl, "bob")
    revoke(pki, crl, "mallory")
    revoke(pki, crl)
    revoked = {entry.serial_number for entry in x509.load_pem_x509_crl(crl.read_bytes())}
    serials = {
        x509.load_pem_x509_certificate((pki / f"{name}.pem").read_bytes()).serial_number
        for name in ("bob", "mallory")
    }
    assert revoked == serials
    number = x509.load_pem_x509_crl(crl.read_bytes()).extensions.get_extension_for_class(
        x509.CRLNumber
    )
    assert number.value.crl_number == 3
