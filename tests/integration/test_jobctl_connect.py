"""jobctl's connection failures against real servers: exit 5 (or 2) and a sentence, no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from jobctl_support import Jobctl, Server, finish

from jobservice.security.pki import init_pki


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, unrelated CA with its own alice."""
    out = tmp_path_factory.mktemp("other") / "pki"
    init_pki(out, ["alice"])
    return out


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_failures(ctl: Jobctl, pki: Path, other_pki: Path) -> None:
    cases = {
        "down": ctl.popen("status", "0", env={"JOBCTL_SERVER": f"127.0.0.1:{_closed_port()}"}),
        # the server's certificate is not from the CA we trust
        "wrong_ca": ctl.popen("--ca", str(other_pki / "ca.pem"), "status", "0"),
        # our certificate is not from the CA the server trusts
        "rejected": ctl.popen(
            "-c", str(other_pki / "alice.pem"), "--ca", str(pki / "ca.pem"), "status", "0"
        ),
        # the server certificate is for localhost/127.0.0.1/::1; not for another name
        "bad_address": ctl.popen("-s", "no-such-host.invalid:1", "status", "0"),
    }
    results = {name: finish(proc, (name,)) for name, proc in cases.items()}
    assert {name: r.code for name, r in results.items()} == dict.fromkeys(cases, 5), results
    assert "connection refused. Is jobd running?" in results["down"].stderr
    assert "certificate is not trusted" in results["wrong_ca"].stderr
    assert "Is --ca the CA that signed the server's certificate?" in results["wrong_ca"].stderr
    assert "refused the connection: your certificate" in results["rejected"].stderr
    assert "is not issued by the CA in" in results["rejected"].stderr
    assert all(r.out == b"" and r.stderr.count("\n") == 1 for r in results.values())


def test_credential_problems_are_usage_errors(ctl: Jobctl, pki: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    results = [
        ctl("-u", "bob", "status", "0"),  # alice's certificate
        ctl("status", "0", user=None),  # no certificate anywhere
        ctl("-c", str(tmp_path / "missing.pem"), "status", "0"),
        ctl("-k", str(pki / "bob.key"), "status", "0"),  # not alice's key
        ctl(
            "-c",
            str(tmp_path / "junk.pem"),
            "--ca",
            str(pki / "ca.pem"),
            "-k",
            str(pki / "alice.key"),
            "status",
            "0",
        ),
        ctl("-s", "127.0.0.1:notaport", "status", "0"),
    ]
    assert [r.code for r in results] == [2] * len(results), results
    assert results[0].stderr == (
        f"--user is 'bob' but certificate {pki}/alice.pem is for 'alice'; "
        "pass the certificate of 'bob' or drop --user.\n"
    )
    assert "No client certificate given" in results[1].stderr
    assert "missing.pem" in results[2].stderr
    assert "does not match" in results[3].stderr
    assert "junk.pem" in results[4].stderr
    assert "Invalid server address" in results[5].stderr
    assert "port 'notaport' is not a number" in results[5].stderr


def test_matching_user_and_explicit_files(ctl: Jobctl, pki: Path) -> None:
    result = ctl(
        "-u",
        "bob",
        "-c",
        str(pki / "bob.pem"),
        "-k",
        str(pki / "bob.key"),
        "--ca",
        str(pki / "ca.pem"),
        "list",
        user=None,
    )
    assert result.code == 0, result
