"""`make demo-cluster`: three NATS servers, two agents and two fronts on loopback, and the design's
session through front 1 with output followed through front 2; then an agent killed (its job
Lost) and a NATS server killed (starts and output still work). Exits non-zero on any surprise.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from demo import SESSION, Step, _banner, _stop_jobd

__all__ = ["main"]

BIN = Path(sys.executable).parent
RUN_DIR = Path("demo-cluster-run")
NODES = ("n1", "n2", "n3")
_START_TIMEOUT = 60.0
_LOST_TIMEOUT = 30.0  # the contract says 10 s; this only bounds a broken build


def _run(args: list[str], env: dict[str, str], shown: str) -> subprocess.CompletedProcess[str]:
    """As `make demo` shows a command: the line, then what it printed (run in RUN_DIR)."""
    print(f"$ {shown}", flush=True)
    done = subprocess.run(args, env=env, cwd=RUN_DIR, capture_output=True, text=True, check=False)
    sys.stdout.write(
        done.stdout
        + done.stderr
        + (f"[exit status {done.returncode}]\n" if done.returncode else "")
    )
    sys.stdout.flush()
    return done


class Cluster:
    """Every process the demo starts, stopped by its pid at the end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {name: (_free_port(), _free_port()) for name in NODES}

    @property
    def urls(self) -> str:
        return ",".join(f"tls://127.0.0.1:{client}" for client, _ in self.ports.values())

    def start(self, name: str, args: list[str], ready: str) -> re.Match[str]:
        """Run `args` in the background (log: NAME.log); wait for `ready` in its log."""
        print(f"$ {shlex.join(args)} 2>{name}.log &", flush=True)
        log_path = RUN_DIR / f"{name}.log"
        with log_path.open("wb") as log:
            self.processes[name] = subprocess.Popen(
                args, cwd=RUN_DIR, stdout=log, stderr=log, env=self.env
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(ready, log_path.read_text(errors="replace"))
            if found:
                return found
            if self.processes[name].poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"{name} did not start:\n{log_path.read_text(errors='replace')}")

    def kill(self, name: str) -> None:
        """SIGKILL: a crash, as when a host dies."""
        process = self.processes.pop(name)
        print(f"$ kill -9 {process.pid}    # {name}", flush=True)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        """SIGTERM by pid, fronts first, then agents, then servers; SIGKILL after 20 s."""
        for name in sorted(self.processes, key=_stop_order):
            _stop_jobd(self.processes[name])  # as for jobd: SIGTERM by pid, then SIGKILL
        self.processes.clear()


def _stop_order(name: str) -> int:
    return 0 if name.startswith("front") else 1 if name.startswith("agent") else 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _jobd(*args: str) -> list[str]:
    return [str(BIN / "jobd"), *args]


def _start_cluster(cluster: Cluster) -> tuple[str, str]:
    """Servers, fronts f1 and f2, agents n1 and n2; the fronts' addresses."""
    nats = str(BIN / "nats-server")
    for name, (client, route) in cluster.ports.items():
        routes = [
            f"--route=127.0.0.1:{r}" for other, (_, r) in cluster.ports.items() if other != name
        ]
        _run(
            _jobd("nats-config", "--pki", "pki", "--name", name,
                  "--listen", f"127.0.0.1:{client}", "--cluster-listen", f"127.0.0.1:{route}",
                  *routes, "--store", f"store-{name}", "--out", f"{name}.conf"),
            cluster.env,
            f"jobd nats-config --pki pki --name {name} ... --out {name}.conf",
        )  # fmt: skip
    for name in NODES:
        cluster.start(f"nats-{name}", [nats, "-c", f"{name}.conf"], "Server is ready")
    addresses = []
    for name in ("f1", "f2"):
        found = cluster.start(
            f"front-{name}",
            _jobd("serve", "--listen", "127.0.0.1:0", "--nats", cluster.urls,
                  "--nats-cert", f"pki/fronts/{name}.pem", "--nats-key", f"pki/fronts/{name}.key",
                  "--ca", "pki/ca.pem", "--cert", "pki/server.pem", "--key", "pki/server.key",
                  "--data-dir", f"data-{name}"),
            r"jobd listening on (\S+)",
        )  # fmt: skip
        addresses.append(found.group(1))
    # After the fronts: fronts create the cluster's streams, agents wait for them.
    for name in ("n1", "n2"):
        cluster.start(
            f"agent-{name}",
            _jobd("agent", "--nats", cluster.urls, "--name", name, "--ca", "pki/ca.pem",
                  "--cert", f"pki/nodes/{name}.pem", "--key", f"pki/nodes/{name}.key",
                  "--data-dir", f"data-{name}"),
            f"jobd agent {name} ready",
        )  # fmt: skip
    return addresses[0], addresses[1]


class Session:
    """jobctl as alice against a front; records every line that is not as expected."""

    def __init__(self, env: dict[str, str], fronts: tuple[str, str]) -> None:
        self.env = env
        self.fronts = fronts
        self.problems: list[str] = []

    def jobctl(self, front: int, *args: str, expect: str | None = None, code: int = 0) -> str:
        env = self.env | {"JOBCTL_SERVER": self.fronts[front]}
        done = _run([str(BIN / "jobctl"), *args], env, f"jobctl -s f{front + 1} {shlex.join(args)}")
        if done.returncode != code or (expect is not None and done.stdout + done.stderr != expect):
            self.problems.append(
                f"jobctl -s f{front + 1} {shlex.join(args)}: expected {expect!r}, exit {code}; "
                f"got {done.stdout + done.stderr!r}, exit {done.returncode}"
            )
        return done.stdout

    def walkthrough(self) -> None:
        """The design's session through front 1; every output through front 2."""
        ids: dict[str, str] = {}
        for step in SESSION:
            if step.note:
                _banner(step.note + ("   (output through front 2)" if _is_output(step) else ""))
            args = [arg.format(**ids) for arg in step.args]
            expect = step.expect.format(**ids) if step.expect is not None else None
            out = self.jobctl(1 if _is_output(step) else 0, *args, expect=expect, code=step.code)
            if step.args[0] == "start" and out.strip().isdigit():
                ids["b" if "a" in ids else "a"] = out.strip()
                if len(ids) == 1:  # let the echo job end, as "basically instantly" assumes
                    self.jobctl(1, "output", ids["a"])

    def status_until(self, front: int, job_id: str, line: str) -> None:
        """Poll `jobctl status` (quietly) until it prints `line`; a problem if it never does."""
        env = self.env | {"JOBCTL_SERVER": self.fronts[front]}
        started = time.monotonic()
        while time.monotonic() - started < _LOST_TIMEOUT:
            done = subprocess.run([str(BIN / "jobctl"), "status", job_id], env=env, cwd=RUN_DIR,
                                  capture_output=True, text=True, check=False)  # fmt: skip
            if done.stdout == line:
                waited = time.monotonic() - started
                print(f"$ jobctl -s f{front + 1} status {job_id}    # after {waited:.1f} s")
                print(done.stdout, end="", flush=True)
                return
            time.sleep(0.5)
        self.problems.append(f"job {job_id} never showed {line!r} through front {front + 1}")


def _is_output(step: Step) -> bool:
    return step.args[0] == "output"


def _failures(session: Session, cluster: Cluster) -> None:
    _banner("A job on node n2, then agent n2 dies (SIGKILL): the job becomes Lost")
    job = session.jobctl(0, "start", "--node", "n2", "--", "sleep", "1000").strip()
    cluster.kill("agent-n2")
    session.status_until(1, job, f"Job '{job}': Lost\n")
    session.jobctl(1, "nodes")
    _banner("A NATS server of three dies (SIGKILL): starts and output still work")
    cluster.kill("nats-n3")
    after = session.jobctl(1, "start", "--", "echo", "still working").strip()
    session.jobctl(0, "output", after, expect="still working\n")
    session.jobctl(0, "run", "--", "sh", "-c", "echo from n1; exit 3", expect="from n1\n", code=3)
    session.jobctl(1, "list")


def main() -> int:
    """Set up, run the sessions, tear down; exit 0 only if every line was as expected."""
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    env["XDG_CONFIG_HOME"] = str((RUN_DIR / "config").resolve())  # ignore a personal config
    env["JOBCTL_CERT"] = "pki/alice.pem"
    cluster = Cluster(env)
    try:
        _banner(
            f"A PKI with nodes and fronts, three NATS servers, two agents, two fronts: ./{RUN_DIR}"
        )
        _run(_jobd("pki", "init", "--out", "pki", "--user", "alice", "--node", "n1",
                   "--node", "n2", "--node", "n3", "--front", "f1", "--front", "f2"),
             env, "jobd pki init --out pki --user alice --node n1 --node n2 --node n3 "
             "--front f1 --front f2")  # fmt: skip
        session = Session(env, _start_cluster(cluster))
        _banner("The cluster's nodes")
        session.jobctl(0, "nodes")
        session.walkthrough()
        _failures(session, cluster)
    finally:
        _banner(f"Stopping every process started here (by pid) and removing ./{RUN_DIR}")
        cluster.stop_all()
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    if session.problems:
        print("\nDemo FAILED, unexpected results:\n  " + "\n  ".join(session.problems),
              file=sys.stderr)  # fmt: skip
        return 1
    print("\nCluster demo finished: every line as expected. docs/cluster.md explains it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
