"""Running jobd as an operator does: JSON logs, a config file under the flags, the systemd unit."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from grpclib.const import Status
from jobdhelp import Connect, JobdLauncher, jobd_command, status_of

from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.cli.jobd.config import load_defaults
from jobservice.cli.jobd.serve import serve

REPO = Path(__file__).resolve().parents[2]
AUDIT_KEYS = {"user", "rpc", "job", "result", "peer", "ms"}


async def test_json_log_lines_parse_and_carry_the_audit_fields(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    jobd = jobd_launcher.start("--log-format=json")
    alice = await connect(jobd, "alice")
    job = (await alice.Start(pb.StartRequest(command="/bin/echo", args=["hi\nthere"]))).job_id
    mallory = await connect(jobd, "mallory")
    assert (await status_of(mallory.Status(pb.StatusRequest(job_id=job))))[0] is not Status.OK
    jobd.wait_for_log(r'"user": "mallory"')
    jobd.terminate()

    entries = [json.loads(line) for line in jobd.log.splitlines()]  # every line is one object
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)
    audits = [entry for entry in entries if entry["logger"] == "jobservice.audit"]
    assert all(entry.keys() >= AUDIT_KEYS for entry in audits)
    start, denied = audits[0], audits[-1]
    assert (start["user"], start["rpc"], start["job"], start["result"]) == (
        "alice",
        "Start",
        job,
        "OK",
    )
    assert (denied["user"], denied["rpc"], denied["result"]) == (
        "mallory",
        "Status",
        "PERMISSION_DENIED",
    )
    assert any(entry.get("address") == jobd.target for entry in entries)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def test_a_config_file_and_flags_combine(
    jobd_launcher: JobdLauncher, connect: Connect, tmp_path: Path
) -> None:
    # The file: a limit, a log format and a policy that knows only alice. The command line: a
    # higher limit and the launcher's own policy (the built-in users). Flags win; the rest of
    # the file applies.
    (tmp_path / "policy.toml").write_text(
        '[users.alice]\ngrants = [{ entity = "self", role = "task-manager" }]\n'
    )
    config = write_config(
        tmp_path / "jobd.toml",
        'policy = "policy.toml"\nmax-jobs-per-user = 1\nlog-format = "json"\nstop-grace = 1\n',
    )
    command = jobd_launcher.command(f"--config={config}", "--max-jobs-per-user=2")
    assert any(arg.startswith("--policy=") for arg in command)
    jobd = jobd_launcher.start(f"--config={config}", "--max-jobs-per-user=2")
    alice = await connect(jobd, "alice")
    sleep = pb.StartRequest(command="/bin/sleep", args=["1000"])
    await alice.Start(sleep)
    await alice.Start(sleep)  # the flag's 2 wins over the file's 1
    assert (await status_of(alice.Start(sleep)))[0] is Status.RESOURCE_EXHAUSTED
    bob = await connect(jobd, "bob")  # the flag's policy knows bob; the file's does not
    assert (await status_of(bob.List(pb.ListRequest())))[0] is Status.OK
    assert json.loads(jobd.log.splitlines()[-1])["logger"]  # the file's log format


def test_config_keys_are_the_flags_and_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "jobd.toml",
        'listen = "127.0.0.1:0"\nca = "pki/ca.pem"\ndata-dir = "/var/lib/jobd"\nverbose = true\n',
    )
    assert load_defaults(serve, config) == {
        "listen": "127.0.0.1:0",
        "ca": str(tmp_path / "pki/ca.pem"),
        "data_dir": "/var/lib/jobd",
        "verbose": True,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_jobs = 3\n", "unknown key(s) max_jobs"),
        ("listen = 5\nlisten-on = 'x'\n", "unknown key(s) listen-on"),
        ("[serve]\nlisten = '127.0.0.1:1'\n", "unknown key(s) serve"),
        ("listen = ['a', 'b']\n", "listen must be a single value"),
        ("listen = \n", "cannot read"),
    ],
)
def test_a_config_file_with_a_mistake_is_refused(tmp_path: Path, text: str, message: str) -> None:
    config = write_config(tmp_path / "jobd.toml", text)
    with pytest.raises(click.BadParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_defaults(serve, config)


def test_jobd_refuses_to_start_with_an_unknown_config_key(
    jobd_launcher: JobdLauncher, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "jobd.toml", "max-job = 3\n")
    result = jobd_launcher.refusal(f"--config={config}")
    assert result.returncode == 2
    assert "unknown key(s) max-job" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = (REPO / "contrib" / "jobd.service").read_text()
    jobd = Path(jobd_command()[0])
    if jobd.name != "jobd":
        pytest.skip("no jobd console script to point ExecStart at")
    # The unit names the installed path; point it at this test's jobd so that it exists.
    local = tmp_path / "jobd.service"
    local.write_text(unit.replace("/opt/jobservice/bin/jobd", str(jobd)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(local)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "jobd.service" not in result.stderr, result.stderr
