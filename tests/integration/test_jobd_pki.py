"""The development PKI grows: users and server names are added without touching the CA."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from jobctl_support import Jobctl
from jobdhelp import JobdLauncher, jobd_command

from jobservice.security.pki import CA_KEY


def _jobd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*jobd_command(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_users_are_added_to_an_existing_pki(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    assert _jobd("pki", "init", "--out", str(pki), "--user", "alice").returncode == 0
    ca_before = (pki / "ca.pem").read_bytes()
    again = _jobd("pki", "init", "--out", str(pki), "--user", "dana")
    assert again.returncode != 0
    assert "overwrite=True" not in again.stderr
    assert f"to add users to this PKI: jobd pki add-user --out {pki} NAME..." in again.stderr
    assert "--force" in again.stderr
    added = _jobd("pki", "add-user", "--out", str(pki), "dana", "erin")
    assert added.returncode == 0, added.stderr
    assert (pki / "ca.pem").read_bytes() == ca_before
    assert ((pki / "dana.key").stat().st_mode & 0o777) == 0o600
    dana = x509.load_pem_x509_certificate((pki / "dana.pem").read_bytes())
    assert dana.subject.rfc4514_string() == "CN=dana"
    twice = _jobd("pki", "add-user", "--out", str(pki), "alice")
    assert twice.returncode != 0
    assert "alice.pem" in twice.stderr
    assert "refusing to overwrite" in twice.stderr


def test_an_added_user_and_server_name_work_with_a_real_jobd(
    jobd_launcher: JobdLauncher, tmp_path: Path
) -> None:
    pki = jobd_launcher.pki  # the session's PKI: add to a copy of it
    copy = tmp_path / "pki"
    copy.mkdir()
    for name in ("ca.pem", "ca.key", "server.pem", "server.key"):  # ca.key beside: the old layout
        (copy / name).write_bytes((pki / (CA_KEY if name == "ca.key" else name)).read_bytes())
        (copy / name).chmod(0o600)
    assert _jobd("pki", "add-user", "--out", str(copy), "charlie").returncode == 0
    made = _jobd("pki", "add-server", "--out", str(copy), "--name", "localhost", "--name", "::1")
    assert made.returncode == 0, made.stderr
    cert, key = copy / "server-localhost.pem", copy / "server-localhost.key"
    server_cert = x509.load_pem_x509_certificate(cert.read_bytes())
    names = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == ["localhost", "::1"]
    server = jobd_launcher.start(f"--cert={cert}", f"--key={key}")
    port = server.target.rsplit(":", 1)[1]
    ctl = Jobctl(f"localhost:{port}", copy, tmp_path)
    result = ctl("list", user="charlie")  # charlie's new certificate, the new server name
    assert result.code == 0, result
