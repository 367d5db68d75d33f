"""The smaller things a new user met (issue 13, finding 11), each against a real jobd."""

from __future__ import annotations

import json
import os
import shlex
import signal
import tempfile
from pathlib import Path

import pytest
from jobctl_support import JOBCTL, Jobctl, Server, finish, wait_for
from jobdhelp import Jobd
from termhelp import Terminal, needs_tmux


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def _ended(ctl: Jobctl, *argv: str, user: str = "alice") -> int:
    job = ctl.start(*argv, user=user)
    assert ctl("output", str(job), user=user).code == 0
    return job


def test_global_options_after_the_verb(ctl: Jobctl, pki: Path) -> None:
    job = _ended(ctl, "true", user="charlie")
    # Before or after the verb, the same: here charlie's certificate for alice's default one.
    after = ctl("status", str(job), "-c", str(pki / "charlie.pem"))
    before = ctl("-c", str(pki / "charlie.pem"), "status", str(job))
    assert after.code == before.code == 0, (after, before)
    assert after.stdout == before.stdout == f"Job '{job}': Exited: 0\n"
    assert ctl("list", "--server", ctl.target, "-u", "alice").code == 0
    assert ctl("list", "-u", "bob").code == 2  # checked against the certificate: alice's


def test_help_verb(ctl: Jobctl) -> None:
    top, verb = ctl("help"), ctl("help", "run")
    assert (top.code, verb.code) == (0, 0)
    assert top.stdout == ctl("--help").stdout
    assert verb.stdout == ctl("run", "--help").stdout
    assert ctl("help", "nope").code == 2


def test_several_ids_for_status_and_stop(ctl: Jobctl) -> None:
    done = _ended(ctl, "true")
    first, second = ctl.start("sleep", "1000"), ctl.start("sleep", "1000")
    status = ctl("status", str(done), str(first), "999999")
    assert status.stdout == f"Job '{done}': Exited: 0\nJob '{first}': Running\n"
    assert (status.code, status.stderr) == (3, "Job '999999' not found.\n")
    both = json.loads(ctl("status", "--json", str(done), str(first)).stdout)
    assert [job["id"] for job in both] == [done, first]
    stopped = ctl("stop", str(first), str(second), str(done))
    assert stopped.stdout == f"Stopped Job '{first}'\nStopped Job '{second}'\n"
    assert (stopped.code, stopped.stderr) == (1, f"Job '{done}' is not running.\n")


def test_status_verbose_shows_owner_and_command(ctl: Jobctl) -> None:
    job = _ended(ctl, "echo", "hello world", "\x1b[2J")
    shown = ctl("status", "-v", str(job))
    assert shown.code == 0, shown
    lines = shown.stdout.splitlines()
    assert lines[0] == f"Job '{job}': Exited: 0"
    assert "  owner:   alice" in lines
    assert "  command: echo 'hello world' $'\\e[2J'" in lines
    assert "  output:  17 bytes" in lines  # "hello world", a space, 4 bytes of escape, "\\n"


def test_stdout_and_stderr_together_mean_both(ctl: Jobctl) -> None:
    job = _ended(ctl, "sh", "-c", "echo out; echo err >&2")
    both = ctl("output", str(job), "--stdout", "--stderr")
    assert (both.out, both.err) == (b"out\n", b"err\n")
    only = ctl("output", str(job), "--stderr")
    assert (only.out, only.err) == (b"", b"err\n")


def test_an_offset_past_the_end_says_so(ctl: Jobctl) -> None:
    job = _ended(ctl, "echo", "hi")
    past = ctl("output", str(job), "--offset", "100")
    assert past.code == 0
    end = f"Job '{job}''s output (3 bytes): nothing to show."
    assert past.stderr == f"jobctl: --offset 100 is past the end of {end}\n"
    assert ctl("output", str(job), "--offset", "3").stderr == ""  # the end itself is fine


def test_a_bad_interpreter_is_named(ctl: Jobctl) -> None:
    """As bash says it: the script exists, the program its #! line names does not."""
    with tempfile.TemporaryDirectory() as where:  # where the job's account may read it
        script = Path(where) / "script"
        script.write_text("#!/no/such/interpreter\necho hi\n")
        script.chmod(0o755)
        Path(where).chmod(0o755)
        result = ctl("run", "--", str(script))
    # Confined (the spawner's exec) or not (jobd's own), Start is refused (exit 6).
    assert result.code == 6, result
    assert f"cannot execute {script}: bad interpreter /no/such/interpreter" in result.stderr
    assert "command not found" not in result.stderr


def test_completion_offers_job_ids_and_profiles(ctl: Jobctl, tmp_path: Path) -> None:
    job = ctl.start("true")
    words = ctl(
        env={"_JOBCTL_COMPLETE": "bash_complete", "COMP_WORDS": "jobctl status ", "COMP_CWORD": "2"}
    )
    assert f"plain,{job}" in words.stdout.splitlines(), words
    config = tmp_path / "xdg/jobctl/config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[profiles.ops]\nserver = "x:1"\n[profiles.default]\nserver = "y:2"\n')
    profiles = ctl(
        env={
            "_JOBCTL_COMPLETE": "bash_complete",
            "COMP_WORDS": "jobctl --profile ",
            "COMP_CWORD": "2",
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        }
    )
    assert profiles.stdout.splitlines() == ["plain,default", "plain,ops"]


def test_jobd_log_lines_have_timestamps_and_a_follower_leaving_is_no_error(
    jobd: Jobd, pki: Path, tmp_path: Path
) -> None:
    ctl = Jobctl(jobd.target, pki, tmp_path)
    assert jobd.log.splitlines()[0][:4].isdigit(), jobd.log  # "2026-...", as every later line
    job = ctl.start("sh", "-c", "echo ready; exec sleep 1000")
    proc = ctl.popen("output", str(job))
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGINT)  # Ctrl-C on a follower
    assert finish(proc, ("output",)).code == 130
    ctl("status", str(job))  # a later call: anything about the first is logged by its end
    wait_for(lambda: "rpc=Status" in jobd.log)
    assert "result=CANCELLED" in jobd.log  # the audit line says it all
    assert "Request was cancelled" not in jobd.log, jobd.log
    assert "ERROR" not in jobd.log, jobd.log
    assert "Traceback" not in jobd.log, jobd.log


@needs_tmux
def test_the_ctrl_c_notice_starts_its_own_line(ctl: Jobctl, tmp_path: Path) -> None:
    term = Terminal(tmp_path, {**os.environ, **ctl.env()})
    try:
        script = "printf 'no new%s' 'line yet'; exec sleep 1000"  # the screen shows it once
        term.type(f"{shlex.quote(str(JOBCTL))} run -- sh -c {shlex.quote(script)}")
        term.wait_for("no newline yet")
        term.press("C-c")
        screen = term.wait_for("stopping Job")
        (line,) = [row for row in screen.splitlines() if "stopping Job" in row]
        assert line.startswith("jobctl: interrupted, stopping Job"), screen
    finally:
        term.hang_up()
