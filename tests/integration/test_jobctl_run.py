"""`jobctl run` against a real jobd: output, the job's own exit status, and Ctrl-C."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest
from jobctl_support import JOBCTL, Jobctl, Server, finish

from jobservice.core.spec import DEFAULT_PATH


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def test_exit_status_is_the_jobs(ctl: Jobctl) -> None:
    ok, three, termed, killed = ctl.many(
        [
            ("run", "--", "sh", "-c", "echo out; echo err >&2"),
            ("run", "--", "sh", "-c", "exit 3"),
            ("run", "--", "sh", "-c", "kill -TERM $$"),
            ("run", "--", "sh", "-c", "kill -KILL $$"),
        ]
    )
    assert (ok.code, ok.out, ok.err) == (0, b"out\n", b"err\n")
    assert (three.code, three.out, three.err) == (3, b"", b"")
    assert termed.code == 143
    assert killed.code == 137


def test_stream_selection_and_options(ctl: Jobctl, tmp_path: Path) -> None:
    script = 'pwd; echo "$GREETING"; echo err >&2'
    only_out, only_err = ctl.many(
        [
            (
                "run",
                "--stdout",
                "--dir",
                str(tmp_path),
                "--envs",
                "GREETING=hi",
                "--",
                "sh",
                "-c",
                script,
            ),
            ("run", "--stderr", "--", "sh", "-c", script),
        ]
    )
    assert (only_out.code, only_out.out, only_out.err) == (0, f"{tmp_path}\nhi\n".encode(), b"")
    assert (only_err.code, only_err.out, only_err.err) == (0, b"", b"err\n")


def test_errors_before_the_job_starts(ctl: Jobctl) -> None:
    missing, denied, usage = [
        ctl("run", "--", "no-such-command-xyz"),
        ctl("run", "--", "true", user="bob"),
        ctl("run"),
    ]
    assert missing.code == 6
    assert "Invalid request: " in missing.stderr
    assert denied.code == 4
    assert usage.code == 2


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_the_job_and_exits_130(ctl: Jobctl, signum: int, code: int) -> None:
    marker = f"interrupt-test-{signum}"
    proc = ctl.popen("run", "--", "sh", "-c", f"echo ready; exec sleep 1000 # {marker}")
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signum)
    result = finish(proc, ("run",))
    assert result.code == code, result
    assert "stopping Job" in result.stderr
    jobs = json.loads(ctl("list", "--json").stdout)
    (job,) = [j for j in jobs if marker in " ".join(j["args"])]
    assert (job["state"], job["signal"]) == ("exited", "SIGTERM")


def test_an_ignored_sigint_stays_ignored(ctl: Jobctl) -> None:
    """Started with SIGINT ignored (a script's background job), run ignores it like any command."""
    script = f"trap '' INT; exec {JOBCTL} run -- sh -c 'echo ready; exec sleep 1000'"
    proc = subprocess.Popen(
        ["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ctl.env()
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGINT)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(0.5)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc, ("run",)).code == 143


def test_a_job_given_no_dir_nor_env_starts_at_home_with_a_path(ctl: Jobctl) -> None:
    """As ssh runs a remote command: in the account's home, with PATH and HOME set."""
    home = pwd.getpwuid(os.geteuid()).pw_dir  # jobd runs as this test's user
    result = ctl("run", "--", "sh", "-c", "pwd; echo $HOME; echo $PATH; env | grep -c JOBCTL")
    assert result.stdout.splitlines() == [home, home, DEFAULT_PATH, "0"], result
    given = ctl("run", "--dir", "/", "--envs", "PATH=/bin", "--envs", "HOME=/x", "--", "sh", "-c",
                "pwd; echo $HOME; echo $PATH")  # fmt: skip
    assert given.stdout.splitlines() == ["/", "/x", "/bin"], given
