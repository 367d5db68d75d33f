"""`make demo`: a dev PKI, jobd on loopback, and the original design's session through jobctl."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["main"]

BIN = Path(sys.executable).parent
RUN_DIR = Path("demo-run")
_READY = re.compile(r"jobd listening on (\S+)")
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Step:
    """One command of the session and what it must print (`{a}`, `{b}`: the two job ids)."""

    args: tuple[str, ...]
    expect: str | None = None  # the exact output; None: any
    code: int = 0
    note: str = ""


# The design's example flags; /tmp is only the jobs' working directory, nothing is written there.
_AS_DESIGNED = ("--envs", "PATH=/usr/bin", "--dir", "/tmp")  # noqa: S108

SESSION = (
    Step(
        ("start", "--cmd", "echo", "--args", "hello world", *_AS_DESIGNED),
        note="1. run `echo hello world`; jobctl prints the job id",
    ),
    Step(
        ("start", "--cmd", "sleep", "--args", "10000", *_AS_DESIGNED),
        note="2. a job that sleeps for 10000 seconds",
    ),
    Step(("stop", "{a}"), "Job '{a}' is not running.\n", 1, "3. the echo job has already ended"),
    Step(("status", "{a}"), "Job '{a}': Exited: 0\n", note="4. job status"),
    Step(("status", "{b}"), "Job '{b}': Running\n"),
    Step(("stop", "{b}"), "Stopped Job '{b}'\n", note="5. stop the sleeper"),
    Step(("output", "{a}", "--all"), "hello world\n", note="6. the echo job's output"),
    Step(("status", "{b}"), "Job '{b}': Exited: 143 (SIGTERM)\n", note="7. 143 = 128 + SIGTERM"),
    Step(("list",), note="Beyond the original session: every job you may see"),
    Step(
        ("run", "--", "sh", "-c", "echo from a job; exit 3"),
        "from a job\n",
        3,
        "`run` follows the output and exits with the job's own status",
    ),
)


def _banner(text: str) -> None:
    print(f"\n# {text}", flush=True)


def _run(args: list[str], env: dict[str, str], shown: str) -> subprocess.CompletedProcess[str]:
    print(f"$ {shown}", flush=True)
    done = subprocess.run(args, env=env, cwd=RUN_DIR, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout + done.stderr)
    if done.returncode:
        print(f"[exit status {done.returncode}]")
    sys.stdout.flush()
    return done


def _start_jobd(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`jobd serve` on a free loopback port; its process and address once it listens."""
    args = [
        "serve", "--listen", "127.0.0.1:0", "--data-dir", "data",
        "--ca", "pki/ca.pem", "--cert", "pki/server.pem", "--key", "pki/server.key",
    ]  # fmt: skip
    print(f"$ jobd {shlex.join(args)} 2>jobd.log &", flush=True)
    log = (RUN_DIR / "jobd.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "jobd"), *args], cwd=RUN_DIR, stdout=log, stderr=log, env=env
    )
    log.close()
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        found = _READY.search((RUN_DIR / "jobd.log").read_text(errors="replace"))
        if found:
            print(found.group(0), flush=True)
            return server, found.group(1)
        if server.poll() is not None:
            break
        time.sleep(0.05)
    _stop_jobd(server)
    raise SystemExit(f"jobd did not start:\n{(RUN_DIR / 'jobd.log').read_text(errors='replace')}")


def _stop_jobd(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM by pid (jobd's graceful shutdown), SIGKILL if it does not go within 20 s."""
    if server.poll() is None:
        os.kill(server.pid, signal.SIGTERM)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.kill(server.pid, signal.SIGKILL)
        server.wait()


def _session(env: dict[str, str]) -> list[str]:
    """Run every step through the real jobctl; the list of surprises (empty when all is well)."""
    ids: dict[str, str] = {}
    problems = []
    for step in SESSION:
        if step.note:
            _banner(step.note)
        args = [arg.format(**ids) for arg in step.args]
        done = _run([str(BIN / "jobctl"), *args], env, "jobctl " + shlex.join(args))
        expect = step.expect.format(**ids) if step.expect is not None else None
        if done.returncode != step.code or (
            expect is not None and done.stdout + done.stderr != expect
        ):
            problems.append(f"jobctl {shlex.join(args)}: expected {expect!r}, exit {step.code}")
        if step.args[0] == "start" and done.returncode == 0:
            ids["b" if "a" in ids else "a"] = done.stdout.strip()
            if len(ids) == 1:  # let the echo job finish, as "basically instantly" assumes
                subprocess.run([str(BIN / "jobctl"), "output", ids["a"]], env=env, cwd=RUN_DIR,
                               capture_output=True, check=False)  # fmt: skip
    return problems


def main() -> int:
    """Set up, run the session, tear down; exit 0 only if every line was as the contract says."""
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    env["XDG_CONFIG_HOME"] = str((RUN_DIR / "config").resolve())  # ignore a personal config
    server = None
    try:
        _banner(f"A development PKI and a server on loopback, in ./{RUN_DIR}")
        _run([str(BIN / "jobd"), "pki", "init", "--out", "pki", "--user", "alice"], env,
             "jobd pki init --out pki --user alice")  # fmt: skip
        server, address = _start_jobd(env)
        env |= {"JOBCTL_SERVER": address, "JOBCTL_CERT": "pki/alice.pem"}
        _banner("jobctl finds pki/alice.key and pki/ca.pem beside the certificate")
        print(f"$ export JOBCTL_SERVER={address} JOBCTL_CERT=pki/alice.pem", flush=True)
        problems = _session(env)
    finally:
        if server is not None:
            _banner(f"Stopping jobd (pid {server.pid}) and removing ./{RUN_DIR}")
            _stop_jobd(server)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    if problems:
        print("\nDemo FAILED, unexpected results:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("\nDemo finished: every line as in the design. Next: `make test`, then README.md.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
