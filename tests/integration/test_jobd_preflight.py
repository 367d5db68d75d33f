"""What jobd refuses or warns about before it serves: a shared data dir, a user's certificate."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jobdhelp import JobdLauncher, jobd_command

from jobservice.security.pki import (
    CA_KEY,
    SERVER_AUTH,
    SERVER_HOSTS,
    issue_certificate,
    load_certified_key,
)


def _run_jobd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*jobd_command(), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_a_second_jobd_on_the_same_data_dir_is_refused(
    jobd_launcher: JobdLauncher, tmp_path: Path
) -> None:
    data = tmp_path / "shared-data"
    first = jobd_launcher.start(data_dir=data)
    second = _run_jobd(*jobd_launcher.command(data_dir=data)[len(jobd_command()) :])
    assert second.returncode != 0
    assert (
        f"data directory {data} is in use by another jobd (pid {first.pid}); stop that one "
        "first, or give this one a --data-dir of its own" in second.stderr
    ), second.stderr
    assert first.process.poll() is None
    assert first.terminate() == 0
    # The lock goes with the process: the directory is free again at once.
    again = jobd_launcher.start(data_dir=data)
    assert again.process.poll() is None


def _issue(pki: Path, out: Path, **kwargs: Any) -> tuple[Path, Path]:
    ca = load_certified_key(pki / "ca.pem", pki / CA_KEY)
    made = issue_certificate(ca, "localhost", hosts=SERVER_HOSTS, **kwargs)
    out.mkdir()
    made.write(out / "server.pem", out / "server.key")
    return out / "server.pem", out / "server.key"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("user", "unsuitable certificate purpose"),
        ("expired", "certificate has expired"),
        ("foreign", "unable to get local issuer certificate"),
    ],
)
def test_a_certificate_clients_would_refuse_is_refused(
    jobd_launcher: JobdLauncher, pki: Path, tmp_path: Path, kind: str, message: str
) -> None:
    if kind == "user":  # alice's own certificate given as the server's
        cert, key = pki / "alice.pem", pki / "alice.key"
    elif kind == "expired":
        past = datetime.now(UTC) - timedelta(days=30)
        cert, key = _issue(
            pki,
            tmp_path / kind,
            extended_key_usage=(SERVER_AUTH,),
            not_before=past,
            not_after=past + timedelta(days=1),
        )
    else:
        other = tmp_path / "other-pki"
        assert _run_jobd("pki", "init", "--out", str(other)).returncode == 0
        cert, key = other / "server.pem", other / "server.key"
    result = _run_jobd(
        *jobd_launcher.command()[len(jobd_command()) :], f"--cert={cert}", f"--key={key}"
    )
    assert result.returncode != 0
    assert f"refusing to start: {cert} cannot serve clients: {message}" in result.stderr
    assert "serverAuth" in result.stderr


def test_a_key_others_may_read_is_warned_about(
    jobd_launcher: JobdLauncher, pki: Path, tmp_path: Path
) -> None:
    key = tmp_path / "server.key"
    shutil.copy(pki / "server.key", key)
    key.chmod(0o644)
    server = jobd_launcher.start(f"--key={key}")
    assert f"server key {key} is accessible by others (mode 0644)" in server.log
    assert f"chmod 600 {key}" in server.log
