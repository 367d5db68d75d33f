"""`jobctl start`, both forms, against a real jobd: the id line, --json, and every refusal."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from jobctl_support import JOB_KEYS, Jobctl, Server


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def test_contract_example_prints_only_the_id(ctl: Jobctl) -> None:
    result = ctl(
        "start",
        "--cmd",
        "echo",
        "--args",
        "hello world",
        "--envs",
        "PATH=/usr/bin",
        "--dir",
        "/tmp",
    )
    assert (result.code, result.err) == (0, b"")
    assert result.stdout.strip().isdigit()
    assert result.stdout == result.stdout.strip() + "\n"
    assert ctl("output", result.stdout.strip()).out == b"hello world\n"


def test_long_form_passes_args_env_and_dir(ctl: Jobctl, tmp_path: Path) -> None:
    result = ctl(
        "start",
        "--cmd",
        "sh",
        "--args",
        "-c",
        "--args",
        'echo "$0 [$GREETING]"; pwd',
        "--args",
        "x y",
        "--envs",
        "GREETING=hi there",
        "--envs",
        "PATH=/usr/bin:/bin",
        "--dir",
        str(tmp_path),
    )
    assert result.code == 0, result
    assert ctl("output", result.stdout.strip()).stdout == f"x y [hi there]\n{tmp_path}\n"


def test_short_form_and_relative_dir(ctl: Jobctl, tmp_path: Path) -> None:
    # Everything after the command is the job's, even words that look like jobctl options.
    job = ctl(
        "start", "--dir", ".", "--", "sh", "-c", 'pwd; echo "$1"', "sh", "--json", cwd=tmp_path
    )
    assert job.code == 0, job
    assert ctl("output", job.stdout.strip()).stdout == f"{tmp_path}\n--json\n"


def test_client_environment_does_not_reach_the_job(ctl: Jobctl) -> None:
    job = ctl("start", "--", "sh", "-c", 'echo "[$LEAK_CHECK]"; env', env={"LEAK_CHECK": "1"})
    assert job.code == 0, job
    out = ctl("output", job.stdout.strip()).stdout
    assert out.startswith("[]\n")
    assert "LEAK_CHECK" not in out


def test_json_is_the_documented_job_object(ctl: Jobctl) -> None:
    result = ctl("start", "--json", "--cmd", "echo", "--args", "hi")
    assert result.code == 0, result
    job = json.loads(result.stdout)
    assert set(job) == JOB_KEYS
    home = pwd.getpwuid(os.geteuid()).pw_dir  # no --dir: the home of jobd's user (this one)
    assert (job["owner"], job["command"], job["args"], job["dir"]) == (
        "alice",
        "echo",
        ["hi"],
        home,
    )
    assert job["state"] in ("running", "exited")
    assert isinstance(job["id"], int)
    assert job["started_at"].endswith("+00:00")


@pytest.mark.parametrize(
    ("args", "user", "code", "message"),
    [
        (("--", "no-such-command-xyz"), "alice", 6, "Invalid request: "),
        (("--dir", "/no/such/dir", "--", "true"), "alice", 6, "Invalid request: "),
        (("--envs", "NOEQUALS", "--", "true"), "alice", 2, "is not NAME=VALUE"),
        (("--cmd", "echo", "--", "echo"), "alice", 2, "with --cmd, give each argument with"),
        (("--args", "x", "--", "echo"), "alice", 2, "--args goes with --cmd"),
        ((), "alice", 2, "No command"),
        (("--", "true"), "bob", 4, "Permission denied: "),
        (("--", "true"), "mallory", 4, "Permission denied: "),
    ],
)
def test_refusals_have_a_message_and_their_own_exit_code(
    ctl: Jobctl, args: tuple[str, ...], user: str, code: int, message: str
) -> None:
    result = ctl("start", *args, user=user)
    assert result.code == code, result
    assert message in result.stderr
    assert result.out == b""


def test_a_server_limit_is_exit_7(jobd_launcher: object, pki: Path, tmp_path: Path) -> None:
    server = jobd_launcher.start("--max-jobs-per-user", "1")  # type: ignore[attr-defined]
    ctl = Jobctl(server.target, pki, tmp_path)
    first = ctl.start("sleep", "10000")
    refused = ctl("start", "--", "sleep", "10000")
    assert refused.code == 7, refused
    assert refused.stderr.startswith("Server limit reached: ")
    assert ctl("stop", str(first)).code == 0
