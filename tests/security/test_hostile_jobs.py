"""What a job running as another account can reach of jobd's: nothing of its data or keys.

Jobs run as jobd's user until run-as (docs/security.md says what that allows); these tests play
the job as another account (`nobody`, the run-as default) and try what a task manager's job
did before: read and list other users' logs, read the keys.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from jobdhelp import JobdLauncher, read_output

from jobservice.api import JobServiceStub, close_channel, open_channel
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.security.pki import CA_KEY, init_pki

OTHER_ACCOUNT = "nobody"


def as_other_account(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, user=OTHER_ACCOUNT, capture_output=True, text=True, timeout=10, check=False
    )


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A directory every account may traverse (pytest's own are 0700, which would hide all)."""
    base = Path(tempfile.mkdtemp(prefix="jobservice-i10-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


async def test_another_account_reaches_no_log_and_no_key(
    jobd_launcher: JobdLauncher, open_base: Path
) -> None:
    pki = open_base / "pki"
    init_pki(pki, ["alice"])
    data = open_base / "data"
    data.mkdir()
    data.chmod(0o755)  # as an operator might have made it
    server = jobd_launcher.start(
        f"--ca={pki / 'ca.pem'}",
        f"--cert={pki / 'server.pem'}",
        f"--key={pki / 'server.key'}",
        data_dir=data,
    )
    channel = await open_channel(
        server.target, ca=pki / "ca.pem", cert=pki / "alice.pem", key=pki / "alice.key"
    )
    alice = JobServiceStub(channel)
    job_id = (await alice.Start(pb.StartRequest(command="echo", args=["secret"]))).job_id
    assert (await read_output(alice, job_id)).data() == b"secret\n"
    log = data / "logs" / f"{job_id}.log"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    server.wait_for_log(r"was open to other accounts \(mode 755\): now 700")
    for attempt in (
        ("cat", str(log)),  # alice's output
        ("ls", str(data)),  # who ran what, when
        ("ls", str(data / "logs")),
        ("sh", "-c", f"echo forged >> {log}"),  # rewriting what Output shows
        ("cat", str(pki / "server.key")),
        ("cat", str(pki / CA_KEY)),
    ):
        result = as_other_account(*attempt)
        assert result.returncode != 0, f"{attempt} succeeded as {OTHER_ACCOUNT}"
        assert "Permission denied" in result.stderr
    assert (await read_output(alice, job_id)).data() == b"secret\n"
    await close_channel(channel)


def test_jobd_warns_of_a_ca_key_beside_the_ca_and_an_open_server_key(
    jobd_launcher: JobdLauncher, pki: Path, tmp_path: Path
) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("ca.pem", "server.pem", "server.key"):
        shutil.copy(pki / name, loose / name)
    shutil.copy(pki / CA_KEY, loose / "ca.key")  # the old layout: the CA key beside ca.pem
    (loose / "server.key").chmod(0o644)
    server = jobd_launcher.start(
        f"--ca={loose / 'ca.pem'}",
        f"--cert={loose / 'server.pem'}",
        f"--key={loose / 'server.key'}",
    )
    server.wait_for_log(r"a CA key lies beside the CA certificate \(.*/loose/ca\.key\)")
    server.wait_for_log(r"server key .*/loose/server\.key is open to other accounts \(mode 644\)")


@pytest.mark.parametrize("user", [OTHER_ACCOUNT])
def test_the_other_account_exists(user: str) -> None:
    assert as_other_account("true").returncode == 0, f"{user} cannot run commands here"
