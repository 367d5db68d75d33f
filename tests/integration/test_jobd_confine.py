"""jobd confines jobs for real: run-as, what a job cannot touch, limits, causes, --confine."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from grpclib.const import Status
from jobctl_support import Jobctl
from jobdhelp import (
    Connect,
    Jobd,
    JobdLauncher,
    credentials,
    first_line_number,
    read_output,
    status_of,
)

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import ConfinementUnavailable
from jobservice.core.confine import ConfineMode, detect

MIB = 1 << 20

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="confinement needs root")


def _cgroups_or_skip() -> None:
    try:
        found, _ = detect(ConfineMode.REQUIRED, f"i11-probe-{os.getpid()}")
    except ConfinementUnavailable as exc:
        pytest.skip(f"no cgroups to confine jobs in: {exc}")
    found.close()


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    """alice's jobs run as the server's default account; charlie's as root, named explicitly."""
    path = tmp_path / "policy.toml"
    path.write_text(
        '[users.alice]\ngrants = [{ entity = "self", role = "task-manager" }]\n'
        '[users.bob]\ngrants = [{ entity = "all", role = "analyst" }]\n'
        '[users.charlie]\ngrants = [{ entity = "all", role = "task-manager" }]\n'
        'run_as = "root"\n'
        'limits = { memory = "64M" }\n'
    )
    return path


@pytest.fixture
def confined_jobd(jobd_launcher: JobdLauncher, policy: Path) -> Jobd:
    _cgroups_or_skip()
    return jobd_launcher.start(
        f"--policy={policy}", "--stop-grace=2", "--max-memory=128M", "--max-timeout=1h"
    )


async def _run(
    stub: JobServiceStub, *argv: str, limits: pb.ResourceLimits | None = None
) -> pb.JobStatus:
    request = pb.StartRequest(command=argv[0], args=argv[1:], limits=limits)
    response = await stub.Start(request)
    output = await read_output(stub, response.job_id)
    assert output.final is not None
    return output.final


def test_jobd_names_its_confinement(confined_jobd: Jobd) -> None:
    confined_jobd.wait_for_log(r"confinement: cgroup v2 at /\S+")


async def test_jobs_run_as_nobody_by_default_and_root_only_when_named(
    confined_jobd: Jobd, connect: Connect
) -> None:
    alice, charlie = await connect(confined_jobd, "alice"), await connect(confined_jobd, "charlie")
    final = await _run(alice, "id", "-u")
    assert final.run_as == "nobody"
    assert not final.unconfined
    assert (await read_output(alice, final.job_id)).data() == b"65534\n"
    final = await _run(charlie, "id", "-u")
    assert final.run_as == "root"
    assert (await read_output(charlie, final.job_id)).data() == b"0\n"


async def test_a_job_cannot_read_the_key_or_a_log_nor_signal_jobd(
    confined_jobd: Jobd, connect: Connect, pki: Path
) -> None:
    alice = await connect(confined_jobd, "alice")
    first = await _run(alice, "echo", "a secret in a log")
    key = credentials(pki, "server").key
    log = confined_jobd.data_dir / "logs" / f"{first.job_id}.log"
    script = (
        f"cat {key} || echo no-key; cat {log} || echo no-log; "
        f"kill -0 {confined_jobd.pid} || echo no-signal; grep NoNewPrivs /proc/self/status"
    )
    final = await _run(alice, "sh", "-c", script)
    out = (await read_output(alice, final.job_id)).data()
    assert b"PRIVATE KEY" not in out
    assert b"a secret" not in out
    assert b"no-key\n" in out
    assert b"no-log\n" in out
    assert b"no-signal\n" in out
    assert re.search(rb"NoNewPrivs:\s+1", out)


async def test_a_setsid_grandchild_dies_at_stop(confined_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(confined_jobd, "alice")
    job_id = (
        await alice.Start(
            pb.StartRequest(command="sh", args=["-c", "setsid sleep 777 & echo $!; sleep 1000"])
        )
    ).job_id
    grandchild = await first_line_number(alice, job_id)
    status = (await alice.Stop(pb.StopRequest(job_id=job_id))).status
    assert status.signal == signal.SIGTERM
    assert (
        not Path(f"/proc/{grandchild}").exists()
        or b"Z" in Path(f"/proc/{grandchild}/stat").read_bytes().rsplit(b")", 1)[1][:3]
    )


async def test_over_a_maximum_is_invalid_argument_naming_it(
    confined_jobd: Jobd, connect: Connect
) -> None:
    alice = await connect(confined_jobd, "alice")
    limits = pb.ResourceLimits(memory_bytes=256 * MIB)
    answer = await status_of(alice.Start(pb.StartRequest(command="true", limits=limits)))
    assert answer == (
        Status.INVALID_ARGUMENT,
        "memory limit 256M is over the maximum of 128M",
    )


async def test_defaults_fill_what_a_request_leaves_unset(
    confined_jobd: Jobd, connect: Connect
) -> None:
    alice, charlie = await connect(confined_jobd, "alice"), await connect(confined_jobd, "charlie")
    mine = await _run(alice, "true", limits=pb.ResourceLimits(pids=50))
    assert mine.limits.pids == 50
    assert mine.limits.memory_bytes == 128 * MIB  # no default: the maximum
    assert mine.limits.timeout_seconds == 3600
    theirs = await _run(charlie, "true")
    assert theirs.limits.memory_bytes == 64 * MIB  # charlie's default, from the policy
    assert theirs.usage.cpu_seconds >= 0


def test_jobctl_says_why_a_job_was_killed(confined_jobd: Jobd, pki: Path, tmp_path: Path) -> None:
    ctl = Jobctl(confined_jobd.target, pki, tmp_path)
    oom = int(ctl("start", "--memory", "64M", "--", "tail", "/dev/zero").stdout)
    late = int(ctl("start", "--timeout", "1s", "--", "sleep", "1000").stdout)
    ctl("output", str(oom))
    ctl("output", str(late))
    assert ctl("status", str(oom)).stdout == f"Job '{oom}': Exited: 137 (SIGKILL, out of memory)\n"
    assert ctl("status", str(late)).stdout == f"Job '{late}': Exited: 143 (SIGTERM, timed out)\n"
    within = ctl("run", "--memory", "64M", "--", "sh", "-c", "head -c 16M /dev/zero | tail -c 1")
    assert within.code == 0


async def test_limits_on_an_unconfined_server_are_failed_precondition(
    jobd_launcher: JobdLauncher, connect: Connect, pki: Path, tmp_path: Path
) -> None:
    server = jobd_launcher.start("--confine=off")
    server.wait_for_log(r"confinement: none \(--confine off\)")
    alice = await connect(server, "alice")
    limits = pb.ResourceLimits(cpu=0.5)
    status, message = await status_of(alice.Start(pb.StartRequest(command="true", limits=limits)))
    assert status is Status.FAILED_PRECONDITION
    assert "unconfined" in message
    final = await _run(alice, "true", limits=pb.ResourceLimits(timeout_seconds=30))
    assert final.unconfined
    refused = Jobctl(server.target, pki, tmp_path)("start", "--memory", "64M", "--", "true")
    assert refused.code == 1
    assert refused.stderr.startswith("Cannot start: this server runs jobs unconfined")


def test_run_as_root_on_the_command_line_is_refused(jobd_launcher: JobdLauncher) -> None:
    command = jobd_launcher.command("--run-as=root")
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert "--run-as root would run every job as root" in result.stderr
