"""The cluster beside the single host, in the same run: three NATS servers (R3), two agents, a
front; start rate, one follower's throughput, live latency, idle memory of a front and an agent.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import (
    MB,
    MIB,
    PROCS,
    PY,
    Context,
    Jobd,
    Row,
    Section,
    alternate,
    child_env,
    median,
    percentile,
    tool,
)
from bench.latency import _GAP, _jobservice
from bench.memory import _settled
from bench.sshd import _free_port
from bench.startrate import starts
from bench.throughput import _make_job
from jobservice.cluster.natsconf import ServerPlan, server_config
from jobservice.security.cluster_pki import issue_cluster_certificates
from jobservice.security.pki import load_certified_key

__all__ = ["Agent", "run", "setup"]

_NODES = ("n1", "n2", "n3")
_WINDOW = 16
# One follower's output: R3 writes it three times over, so less than the single-host GiB.
_MAX_OUTPUT = 256 * MIB
_READY_TIMEOUT = 60.0


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS for the agent")


def run(ctx: Context) -> Section:
    section = Section("cluster", "Cluster: 3 NATS servers (R3), 2 agents, a front, on loopback")
    front, agents, _ = setup(ctx)
    single = Jobd.start(ctx.ws, "single-host", "--policy", str(_policy(ctx)))
    try:
        idle = {"front": _settled(front), "agent": median([_settled_agent(a) for a in agents])}
        section.rows = [
            *_start_rows(ctx, front, single),
            *_output_rows(ctx, front, single, section),
            _latency_row(ctx, front),
            *_idle_rows(idle),
        ]
    finally:
        single.stop()
        front.stop()
        for agent in agents:
            PROCS.end(agent.proc, timeout=30)
        PROCS.end_all()  # the NATS servers
    section.commands += [
        "jobd nats-config ... && nats-server -c nN.conf   # x3, routed, TLS 1.3, verify_and_map",
        "jobd serve --nats URLS --nats-cert f1.pem ...   # the front every client uses",
        "jobd agent --nats URLS --name n1|n2 ...   # x2",
    ]
    section.notes.append(
        "Single-host figures are a plain `jobd serve` measured in the same run, alternated with "
        "the cluster's; the machine runs every process of both (2 cores)."
    )
    return section


def setup(ctx: Context) -> tuple[Jobd, list[Agent], list[subprocess.Popen[bytes]]]:
    """Three NATS servers, agents n1 and n2, front f1 (bench/profile.py profiles them too)."""
    pki = ctx.ws.pki
    ca = load_certified_key(pki / "ca.pem", pki / "ca-private" / "ca.key")
    issue_cluster_certificates(ca, pki, _NODES, ("f1",), days=1)
    urls, servers = _start_servers(ctx)
    front = Jobd.start(
        ctx.ws, "front", "--nats", urls, "--nats-cert", str(pki / "fronts" / "f1.pem"),
        "--nats-key", str(pki / "fronts" / "f1.key"), "--policy", str(_policy(ctx)),
    )  # fmt: skip
    # After the front: fronts create the cluster's streams, agents wait for them.
    agents = [_start_agent(ctx, name, urls) for name in ("n1", "n2")]
    return front, agents, servers


def _policy(ctx: Context) -> Path:
    """As bench/confinement.py's "unconfined": jobs run as root, so the latency printer can run
    the venv's Python, on the agents and on the single host alike."""
    policy = ctx.ws.root / "policy-as-root.toml"
    policy.write_text(
        '[users.alice]\ngrants = [{ entity = "self", role = "task-manager" }]\nrun_as = "root"\n'
    )
    return policy


def _start_servers(ctx: Context) -> tuple[str, list[subprocess.Popen[bytes]]]:
    ports = {name: (_free_port(), _free_port()) for name in _NODES}
    servers = []
    for name, (client, route) in ports.items():
        others = [f"127.0.0.1:{r}" for other, (_, r) in ports.items() if other != name]
        plan = ServerPlan(name, "127.0.0.1", client, route, ctx.ws.root / f"store-{name}")
        config = ctx.ws.root / f"{name}.conf"
        config.write_text(
            server_config(plan, pki=ctx.ws.pki, routes=others, nodes=_NODES, fronts=("f1",))
        )
        log = ctx.ws.root / f"nats-{name}.log"
        with log.open("wb") as out:
            servers.append(
                PROCS.popen([tool("nats-server"), "-c", str(config)], stdout=out, stderr=out)
            )
        _wait_for(log, "Server is ready")
    return ",".join(f"tls://127.0.0.1:{client}" for client, _ in ports.values()), servers


def _start_agent(ctx: Context, name: str, urls: str) -> Agent:
    pki = ctx.ws.pki
    log = ctx.ws.root / f"agent-{name}.log"
    args = [tool("jobd"), "agent", "--nats", urls, "--name", name, "--ca", str(pki / "ca.pem")]
    args += [
        "--cert",
        str(pki / "nodes" / f"{name}.pem"),
        "--key",
        str(pki / "nodes" / f"{name}.key"),
    ]
    args += ["--data-dir", str(ctx.ws.root / f"data-{name}")]
    with log.open("wb") as out:
        proc = PROCS.popen(args, stdout=out, stderr=out, env=child_env(ctx.ws))
    _wait_for(log, f"jobd agent {name} ready")
    return Agent(proc)


def _wait_for(log: Path, pattern: str) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while not re.search(pattern, log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log.name}: no {pattern!r}:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


def _settled_agent(agent: Agent) -> float:
    time.sleep(0.5)
    return median([agent.rss_mib() for _ in range(5)])


def _start_rows(ctx: Context, front: Jobd, single: Jobd) -> list[Row]:
    n = ctx.scale.start_jobs
    rates = alternate(
        [
            ("cluster", lambda: front.run(starts, n, _WINDOW)),
            ("single", lambda: single.run(starts, n, _WINDOW)),
        ],
        ctx.scale.rounds,
    )
    cluster = Row(f"Start via a front, {_WINDOW} in flight, 2 agents", "jobs/s", rates["cluster"])
    cluster.reference, cluster.ref_value = "single host", median(rates["single"])
    cluster.target, cluster.met = ">= 500 jobs/s", cluster.value >= 500
    cluster.note = f"{n} x /bin/true per round"
    return [cluster]


def _output_rows(ctx: Context, front: Jobd, single: Jobd, section: Section) -> list[Row]:
    size = min(ctx.scale.output_bytes, _MAX_OUTPUT)
    jobs = {"cluster": front.run(_make_job, size), "single": single.run(_make_job, size)}
    commands = {
        name: [*ctx.ws.jobctl(jobd), "output", str(jobs[name])]
        for name, jobd in (("cluster", front), ("single", single))
    }
    seconds = alternate(
        [
            ("cluster", lambda: _timed_output(commands["cluster"], size)),
            ("single", lambda: _timed_output(commands["single"], size)),
        ],
        ctx.scale.rounds,
    )
    rates = {name: [size / MB / s for s in runs] for name, runs in seconds.items()}
    row = Row(f"jobctl output via a front ({size >> 20} MiB, finished)", "MB/s", rates["cluster"])
    row.reference, row.ref_value = "single host", median(rates["single"])
    row.target, row.met = ">= 0.50x single host", row.value >= 0.5 * row.ref_value
    section.commands.append(f"{shlex.join(commands['cluster'])} > /dev/null")
    return [row]


def _timed_output(command: list[str], size: int) -> float:
    """Seconds `jobctl output` takes, its output counted: a read that ends short is an error,
    not a fast round (a front once ended reads early, with exit 0)."""
    received = 0
    begin = time.perf_counter()
    proc = PROCS.popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    with proc.stdout:
        while data := proc.stdout.read1(1 << 20):  # type: ignore[attr-defined]
            received += len(data)
    code = proc.wait(120)
    elapsed = time.perf_counter() - begin
    PROCS.end(proc)
    if code != 0 or received != size:
        raise RuntimeError(f"{command[0]} exited {code} after {received} of {size} bytes")
    return elapsed


def _latency_row(ctx: Context, front: Jobd) -> Row:
    lines = ctx.scale.latency_lines
    follower = [PY, "-m", "bench.clients", "latency", front.target, str(ctx.ws.pki)]
    follower += [str(lines), str(_GAP)]
    delays = [d for _ in range(ctx.scale.rounds) for d in _jobservice(follower, ctx)]
    row = Row("live line via a front: p99", "ms", [percentile(delays, 99.0)], False)
    row.target, row.met = "< 10 ms", row.value < 10
    row.note = (
        f"p50 {percentile(delays, 50.0):.1f} ms, max {max(delays):.1f} ms, {len(delays)} lines"
    )
    return row


def _idle_rows(idle: dict[str, float]) -> list[Row]:
    rows = []
    for name in ("front", "agent"):
        row = Row(f"idle RSS, {name}", "MiB", [idle[name]], False)
        row.target, row.met = "< 60 MiB", idle[name] < 60
        rows.append(row)
    return rows
