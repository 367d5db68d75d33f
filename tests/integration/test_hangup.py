"""Closing the terminal (SIGHUP) under jobd and under `jobctl run`, in a real terminal (tmux)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from jobctl_support import JOBCTL, Jobctl, Server, finish, wait_for
from jobdhelp import Connect, JobdLauncher, pid_exists, wait_gone
from termhelp import Terminal, needs_tmux

from jobservice.api.v1 import jobservice_pb2 as pb

pytestmark = needs_tmux


async def test_jobd_started_in_a_terminal_survives_its_closing(
    jobd_launcher: JobdLauncher, tmp_path: Path, connect: Connect
) -> None:
    log, pidfile = tmp_path / "jobd.log", tmp_path / "jobd.pid"
    command = shlex.join(jobd_launcher.command("--stop-grace", "2"))
    term = Terminal(tmp_path, dict(os.environ))
    term.type(f"{command} 2>{log} & echo $! >{pidfile}; echo $((40 + 2))-up")
    term.wait_for("42-up")
    wait_for(lambda: "listening on" in log.read_text())
    pid = int(pidfile.read_text())
    found = re.search(r"jobd listening on (\S+)", log.read_text())
    assert found
    stub = await connect(found.group(1), "alice")
    job = await stub.Start(pb.StartRequest(command="sleep", args=["1000"]))

    term.hang_up()  # the README's `jobd serve ... &`, then the terminal window is closed

    wait_for(lambda: "SIGHUP" in log.read_text())
    assert pid_exists(pid), log.read_text()
    # jobd serve reads its policy and certificates again on SIGHUP, and keeps serving.
    assert "received SIGHUP: reloading" in log.read_text()
    status = await stub.Status(pb.StatusRequest(job_id=job.job_id))
    assert status.status.state == pb.JOB_STATE_RUNNING
    os.kill(pid, signal.SIGTERM)
    assert wait_gone(pid, 20), log.read_text()
    assert "stopped" in log.read_text()


@pytest.mark.parametrize("how", ["terminal closed", "SIGHUP"])
def test_run_whose_terminal_closes_stops_its_job(
    shared_jobd: Server, pki: Path, tmp_path: Path, how: str
) -> None:
    ctl = Jobctl(shared_jobd.target, pki, tmp_path)
    marker = f"hangup-{how.replace(' ', '-')}"
    if how == "SIGHUP":
        proc = ctl.popen("run", "--", "sh", "-c", f"echo ready; exec sleep 1000 # {marker}")
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGHUP)
        result = finish(proc, ("run",))
        assert result.code == 128 + signal.SIGHUP, result
        assert "jobctl: terminal closed, stopping Job" in result.stderr
    else:
        term = Terminal(tmp_path, ctl.env())
        # The job's line is not the typed one: the screen shows both.
        script = f"echo $((40 + 2))-up; exec sleep 1000 # {marker}"
        term.type(f"{JOBCTL} run -- sh -c {shlex.quote(script)}; echo after")
        term.wait_for("42-up")
        term.hang_up()

    def ended() -> bool:
        jobs = json.loads(ctl("list", "--json").stdout)
        (job,) = [j for j in jobs if marker in " ".join(j["args"])]
        return bool(job["state"] == "exited" and job["signal"] == "SIGTERM")

    wait_for(ended, timeout=30)


def test_run_whose_reader_leaves_stops_its_job(
    shared_jobd: Server, pki: Path, tmp_path: Path
) -> None:
    """`jobctl run ... | head -1`: jobctl dies of the closed pipe, and takes its job with it."""
    ctl = Jobctl(shared_jobd.target, pki, tmp_path)
    marker = "sigpipe-run"
    script = f"while :; do echo x; sleep .1; done # {marker}"
    pipeline = f"{JOBCTL} run -- sh -c {shlex.quote(script)} | head -1"
    done = subprocess.run(
        ["bash", "-c", f"{pipeline}; echo ${{PIPESTATUS[0]}} >&2"],
        capture_output=True,
        env=ctl.env(),
        timeout=60,
        check=False,
    )
    assert done.stdout == b"x\n"
    assert done.stderr.strip().splitlines()[-1] == b"141", done.stderr
    jobs = json.loads(ctl("list", "--json").stdout)
    (job,) = [j for j in jobs if marker in " ".join(j["args"])]
    assert (job["state"], job["signal"]) == ("exited", "SIGTERM")  # stopped before jobctl exited
