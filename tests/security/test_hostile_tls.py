"""Hostile TLS and identity at a real jobd: old protocols, plaintext, odd certificate names.

The TLS policy itself (versions, suites, groups, bad certificates) is proved against the
production context in test_tls_handshake.py and against jobd in test_jobd_tls.py; these are
the cases those leave out.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
import subprocess
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from grpclib.const import Status
from hostilehelp import assert_log_lines_are_records
from jobdhelp import Connect, Jobd, JobdLauncher, credentials, status_of

from jobservice.api import (
    ConnectError,
    ConnectFailure,
    JobServiceStub,
    close_channel,
    open_channel,
)
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.security import pki as devpki
from jobservice.security.errors import PKIError

OPENSSL = shutil.which("openssl") or "openssl"


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_1_0_and_1_1_clients_are_refused_in_the_handshake(
    jobd_launcher: JobdLauncher, pki: Path, version: str
) -> None:
    server = jobd_launcher.start("-v")  # debug: the handshake failure is logged
    creds = credentials(pki, "alice")
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", server.target, version, "-msg",
         "-cipher", "DEFAULT:@SECLEVEL=0",  # let this OpenSSL speak the old version at all
         "-CAfile", str(creds.ca), "-cert", str(creds.cert), "-key", str(creds.key)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", timeout=20,
        check=False,
    )  # fmt: skip
    shown = {"-tls1": "TLS 1.0", "-tls1_1": "TLS 1.1"}[version]
    assert f"{shown}, Handshake" in result.stdout, "the old ClientHello was really sent"
    assert "Cipher is TLS" not in result.stdout
    assert "New, TLSv1.3" not in result.stdout
    server.wait_for_log(
        r"refused TLS handshake from 127\.0\.0\.1:\d+: TLS version, cipher suite or key "
        r"exchange outside the policy \(UNSUPPORTED_PROTOCOL\)"
    )
    assert "audit" not in server.log


PLAINTEXT = {
    "h2c-prior-knowledge": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    "http1": b"POST /jobservice.v1.JobService/List HTTP/1.1\r\nHost: localhost\r\n\r\n",
}


@pytest.mark.parametrize("name", list(PLAINTEXT))
def test_plaintext_clients_get_nothing(shared_jobd: Jobd, name: str) -> None:
    host, port = shared_jobd.target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(PLAINTEXT[name])
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert received == b"", f"jobd answered a plaintext {name} client: {received[:40]!r}"


async def test_http1_over_mutual_tls_is_not_served(shared_jobd: Jobd, pki: Path) -> None:
    creds = credentials(pki, "alice")
    context = ssl.create_default_context(cafile=creds.ca)
    context.load_cert_chain(creds.cert, creds.key)
    context.set_alpn_protocols(["http/1.1"])
    host, port = shared_jobd.target.rsplit(":", 1)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, int(port), ssl=context, server_hostname="localhost"), 10
    )
    writer.write(PLAINTEXT["http1"])
    received = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    assert b"HTTP/1" not in received
    assert b"jobs" not in received


async def test_a_client_that_does_not_trust_the_servers_ca_sends_nothing(
    shared_jobd: Jobd, pki: Path, tmp_path: Path
) -> None:
    other = devpki.create_ca("someone else's CA")
    (tmp_path / "other-ca.pem").write_bytes(other.cert_pem())
    creds = credentials(pki, "alice")
    lines_before = shared_jobd.log.count("\n")
    with pytest.raises(ConnectError) as refused:
        await open_channel(
            shared_jobd.target, ca=tmp_path / "other-ca.pem", cert=creds.cert, key=creds.key
        )
    assert refused.value.reason is ConnectFailure.TLS_VERIFY
    # A call on another connection afterwards is audited; the refused client never was.
    bob = credentials(pki, "bob")
    channel = await open_channel(shared_jobd.target, ca=bob.ca, cert=bob.cert, key=bob.key)
    await JobServiceStub(channel).List(pb.ListRequest())
    await close_channel(channel)
    await shared_jobd.logged(r"audit user=bob rpc=List")
    audits = [line for line in shared_jobd.log.splitlines()[lines_before:] if "audit " in line]
    assert all("user=bob" in line for line in audits), audits


# Odd names: what `jobd pki init` refuses to issue, and what jobd does with the same name when
# a certificate carrying it was minted with the trusted CA's key by other means.
# name -> the status every call gets: PERMISSION_DENIED (a name, but nobody in the policy) or
# UNAUTHENTICATED (not usable as a name at all).
ODD_NAMES = {
    "alice bob": Status.PERMISSION_DENIED,
    'al"ice': Status.PERMISSION_DENIED,
    "cn=alice,o=admins": Status.PERMISSION_DENIED,
    "../../etc/passwd": Status.PERMISSION_DENIED,
    "ålice": Status.PERMISSION_DENIED,
    "\u0430lice": Status.PERMISSION_DENIED,  # Cyrillic a (U+0430): looks like alice, is not
    "ALICE": Status.PERMISSION_DENIED,
    "a" * 1000: Status.PERMISSION_DENIED,
    "alice\nuser=charlie": Status.UNAUTHENTICATED,
    "alice\r": Status.UNAUTHENTICATED,
    "alice\x00.evil": Status.UNAUTHENTICATED,
    "alice\u2028charlie": Status.UNAUTHENTICATED,
    "\x1b[2Jalice": Status.UNAUTHENTICATED,
    " alice": Status.UNAUTHENTICATED,
}


@pytest.mark.parametrize("name", [n for n in ODD_NAMES if n != "ALICE"], ids=ascii)
def test_the_pki_refuses_odd_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(PKIError, match="invalid user name"):
        devpki.init_pki(tmp_path / "pki", [name])


def mint(pki: Path, name: str, out: Path) -> tuple[Path, Path]:
    """A client certificate with CN=`name`, signed by the trusted CA's key, bypassing checks."""
    ca = devpki.load_certified_key(pki / "ca.pem", pki / devpki.CA_KEY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns about CNs over 64 characters
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name, _validate=False)])
    cert, key = out / "odd.pem", out / "odd.key"
    devpki.issue_certificate(ca, "unused", subject=subject).write(cert, key)
    return cert, key


@pytest.mark.parametrize("name", list(ODD_NAMES), ids=ascii)
async def test_odd_names_from_the_trusted_ca_are_refused_or_contained(
    shared_jobd: Jobd, connect: Connect, pki: Path, tmp_path: Path, name: str
) -> None:
    cert, key = mint(pki, name, tmp_path)
    alice = await connect(shared_jobd, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="true"))).job_id
    channel = await open_channel(shared_jobd.target, ca=pki / "ca.pem", cert=cert, key=key)
    try:
        stub = JobServiceStub(channel)
        calls = {
            "List": stub.List(pb.ListRequest()),
            "Status": stub.Status(pb.StatusRequest(job_id=job_id)),
            "Start": stub.Start(pb.StartRequest(command="true")),
            "Stop": stub.Stop(pb.StopRequest(job_id=job_id)),
        }
        answers = {rpc: (await status_of(call))[0] for rpc, call in calls.items()}
    finally:
        await close_channel(channel)
    assert answers == dict.fromkeys(calls, ODD_NAMES[name])
    # The audit line names the caller in one field, quoted unless it is a plain word; a call
    # from no usable identity is refused before its request (and so its job id) is read.
    if ODD_NAMES[name] is Status.UNAUTHENTICATED:
        shown, job = "-", "-"
    else:
        plain = re.fullmatch(r"[\w.@+-]+", name, re.ASCII)
        shown = name if plain else json.dumps(name).replace(" ", "\\u0020")
        job = str(job_id)
    line = f"audit user={shown} rpc=Status job={job} result={ODD_NAMES[name].name} "
    await shared_jobd.logged(re.escape(line))
    assert_log_lines_are_records(shared_jobd.log)
