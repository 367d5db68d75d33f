"""A refused connection says why: on jobctl's side from its own certificate, in jobd's log too."""

from __future__ import annotations

import logging
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jobctl_support import Jobctl, wait_for
from jobdhelp import Jobd, JobdLauncher

from jobservice.api.refusals import RefusalLog, RefusalReason, classify
from jobservice.security.pki import (
    CA_KEY,
    SERVER_AUTH,
    create_ca,
    issue_certificate,
    load_certified_key,
)

_DAY = timedelta(days=1)


def _alice(pki: Path, out: Path, *, foreign: bool = False, **kwargs: Any) -> Path:
    """A certificate for alice made as asked, with its key beside it; returns the .pem."""
    ca = create_ca() if foreign else load_certified_key(pki / "ca.pem", pki / CA_KEY)
    out.mkdir()
    issue_certificate(ca, "alice", **kwargs).write(out / "alice.pem", out / "alice.key")
    return out / "alice.pem"


@pytest.mark.parametrize(
    ("kind", "ours", "theirs"),
    [
        ("expired", "expired on", "client certificate has expired (certificate has expired)"),
        ("future", "is not valid until", "client certificate is not yet valid"),
        (
            "server-only",
            "is not for client authentication",
            "client certificate is not for clientAuth",
        ),
        ("foreign", "is not issued by the CA in", "client certificate is not issued by our CA"),
    ],
)
def test_a_refused_certificate_is_explained_on_both_sides(
    jobd: Jobd, pki: Path, tmp_path: Path, kind: str, ours: str, theirs: str
) -> None:
    now = datetime.now(UTC)
    made: dict[str, Any] = {
        "expired": {"not_before": now - 30 * _DAY, "not_after": now - _DAY},
        "future": {"not_before": now + _DAY, "not_after": now + 30 * _DAY},
        "server-only": {"extended_key_usage": (SERVER_AUTH,)},
        "foreign": {"foreign": True},
    }
    cert = _alice(pki, tmp_path / kind, **made[kind])
    ctl = Jobctl(jobd.target, pki, tmp_path)
    result = ctl("--cert", str(cert), "--ca", str(pki / "ca.pem"), "list", user=None)
    assert result.code == 5, result
    assert result.stderr.startswith(f"The server at {jobd.target} refused the connection: ")
    assert f"your certificate {cert} {ours}" in result.stderr, result
    wait_for(lambda: "refused TLS handshake" in jobd.log)
    assert f": {theirs}" in jobd.log, jobd.log


def test_a_name_the_server_certificate_is_not_for_says_which_names_are(
    jobd_launcher: JobdLauncher, pki: Path, tmp_path: Path
) -> None:
    ca = load_certified_key(pki / "ca.pem", pki / CA_KEY)
    named = issue_certificate(ca, "jobd.example", extended_key_usage=(SERVER_AUTH,),
                              hosts=("jobd.example",))  # fmt: skip
    named.write(tmp_path / "named.pem", tmp_path / "named.key")
    server = jobd_launcher.start(
        f"--cert={tmp_path / 'named.pem'}", f"--key={tmp_path / 'named.key'}"
    )
    result = Jobctl(server.target, pki, tmp_path)("list")  # dials 127.0.0.1
    assert result.code == 5, result
    assert "the server's certificate is not for that name (it is for jobd.example)" in result.stderr
    assert "(-s NAME:PORT)" in result.stderr
    assert "jobd pki add-server --name HOST" in result.stderr


def test_the_log_of_refusals_is_bounded_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    refusals = RefusalLog(interval=3600)
    expired = ssl.SSLCertVerificationError(1, "certificate verify failed")
    expired.verify_code, expired.verify_message = 10, "certificate has expired"
    with caplog.at_level(logging.WARNING, logger="jobservice.connections"):
        for _ in range(5):
            assert refusals.note("10.0.0.1:1", expired) is RefusalReason.CERT_EXPIRED
        refusals.note("10.0.0.1:2", TimeoutError())
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "refused TLS handshake from 10.0.0.1:1: client certificate has expired "
        "(certificate has expired)",
        "refused TLS handshake from 10.0.0.1:2: handshake not finished in time (TimeoutError)",
    ]
    refusals.interval = 0  # the next line of a reason tells how many were left out
    with caplog.at_level(logging.WARNING, logger="jobservice.connections"):
        refusals.note("10.0.0.1:3", expired)
    assert caplog.records[-1].getMessage().endswith("(4 more like it in the last 0 s not shown)")
    assert classify(ConnectionResetError()) is RefusalReason.CLOSED
