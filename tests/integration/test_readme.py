"""The README's examples run as written: "Running it for real" and "jobctl in one screen".

The only change made to them: the server's port. Tests never bind a service's standard port, so
127.0.0.1:50051 becomes a free one, and JOBCTL_SERVER names it where the README relies on the
default.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
_STANDARD = "127.0.0.1:50051"


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def _free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _script() -> tuple[str, str]:
    """The section's shell blocks, in order, with the sentence that says how to stop jobd."""
    section = _section("Running it for real")
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert blocks[0].strip() == "source .venv/bin/activate"  # done by the test: PATH below
    (stop,) = re.findall(r"Stop the server, from any shell, with `([^`]+)`", section)
    return "".join(blocks[1:]), stop


def _bash(
    script: str, env: dict[str, str], cwd: Path, scratch: Path
) -> subprocess.CompletedProcess[str]:
    """Run `script`; its output through files, as jobd started in it keeps its stdout open."""
    out, err = scratch / "script.out", scratch / "script.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        done = subprocess.run(
            ["bash", "-c", script],
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            timeout=120,
            check=False,
        )
    return subprocess.CompletedProcess(done.args, done.returncode, out.read_text(), err.read_text())


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    address = _free_address()
    setup, stop = _script()
    setup = setup.replace(_STANDARD, address)
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "HOME": str(home),
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "JOBCTL_SERVER": address,
        "PYTHONUNBUFFERED": "1",
    }
    pidfile = home / "jobservice/jobd.pid"
    # Each step as a person would type it, waiting for jobd to be ready after starting it.
    steps = setup.replace(
        "& echo $! >~/jobservice/jobd.pid\n",
        "& echo $! >~/jobservice/jobd.pid\n"
        "until grep -q 'listening on' ~/jobservice/jobd.log; do\n"
        "  kill -0 $(cat ~/jobservice/jobd.pid) || exit 99\n"
        "  sleep 0.05\n"
        "done\n",
    )
    try:
        ran = _bash(steps, env, ROOT, tmp_path)
        log = (home / "jobservice/jobd.log").read_text(errors="replace")
        assert ran.returncode == 0, (ran, log)
        assert "hello from a job\n" in ran.stdout
        tables = [line for line in ran.stdout.splitlines() if line.startswith("ID ")]
        assert len(tables) == 2, ran.stdout  # alice's list, then charlie's (--profile)
        assert "sleep 60" in ran.stdout
        assert "Error" not in ran.stderr, ran.stderr
        assert "failed" not in ran.stderr, ran.stderr
        _one_screen(env, tmp_path)
    finally:
        if pidfile.exists():
            stopped = _bash(stop, env, tmp_path, tmp_path)
            assert stopped.returncode == 0, stopped
            _wait_gone(int(pidfile.read_text()))


def _wait_gone(pid: int) -> None:
    """Wait for jobd to finish the shutdown `stop` began (it stops its jobs and removes their
    cgroups first); SIGKILL it only if it never does, which would leave a job's cgroup behind."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not select.select([pidfd], [], [], 60)[0]:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(pidfd)


def _one_screen(env: dict[str, str], tmp_path: Path) -> None:
    """Every command line of "jobctl in one screen", 42 replaced by the id it printed."""
    env = {**env, "JOBCTL_CERT": str(Path(env["HOME"]) / "jobservice/pki/alice.pem")}
    lines = [
        line.strip().split("  #")[0].strip()
        for line in _section("jobctl in one screen").splitlines()
        if line.startswith("    jobctl ") and "[" not in line.split("#")[0]
    ]
    # `--dir .` where there is a Makefile, as in a checkout, that the job's account may read
    # (jobd as root runs jobs as nobody; the test's own directories are root's alone).
    project = Path(tempfile.mkdtemp(prefix="jobservice-readme-"))
    project.chmod(0o755)
    (project / "Makefile").write_text("test:\n\t@echo all tests passed\n")
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    job_id = "42"
    # `rm` last: the other lines look at the job it removes.
    lines.sort(key=lambda line: line.startswith("jobctl rm "))
    for line in lines:
        words = [job_id if word == "42" else word for word in shlex.split(line)]
        done = subprocess.run(
            words, env=env, cwd=project, capture_output=True, text=True, timeout=60, check=False
        )
        results.setdefault(words[1], done)  # each verb's first line is the one checked
        if words[1] == "start":
            job_id = done.stdout.strip()
    shutil.rmtree(project)
    assert results["start"].returncode == 0, results["start"]
    assert results["stop"].stderr == f"Job '{job_id}' is not running.\n"  # echo is long done
    assert results["status"].stdout == f"Job '{job_id}': Exited: 0\n"
    assert results["output"].stdout == "hello world\n"
    assert results["list"].stdout.startswith("ID ")
    assert f"Removed Job '{job_id}'" in results["rm"].stdout, results["rm"]  # 43 is no job here
    run = results["run"]
    assert (run.returncode, run.stdout) == (0, "all tests passed\n"), run


@pytest.mark.parametrize("section", ["Running it for real", "jobctl in one screen"])
def test_the_sections_exist(section: str) -> None:
    assert _section(section)
