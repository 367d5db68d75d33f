"""Benchmark machinery: processes ended by pid, a dev PKI and jobd, alternation, medians, table."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = [
    "GIB",
    "MB",
    "MIB",
    "OUT",
    "PROCS",
    "PY",
    "REPO",
    "Context",
    "Jobd",
    "Procs",
    "Row",
    "Scale",
    "Section",
    "Workspace",
    "alternate",
    "child_env",
    "children_cpu",
    "first_byte",
    "fmt",
    "format_table",
    "median",
    "met_text",
    "percentile",
    "ratio_text",
    "start_job",
    "timed_run",
    "tool",
    "wait_exited",
]

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
PY = sys.executable
MB = 1_000_000  # throughput is in MB/s (10**6 bytes), sizes in MiB/GiB
MIB = 1 << 20
GIB = 1 << 30
USER = "alice"  # Self/Task Manager in the built-in policy: may start and follow her jobs

T = TypeVar("T")
_READY = re.compile(r"jobd listening on (\S+)")
_START_TIMEOUT = 20.0
_JOB_TIMEOUT = 300.0  # no benchmark job runs anywhere near this long


def tool(name: str) -> str:
    """The venv's console script `name` (jobd, jobctl), else whatever PATH has."""
    script = Path(PY).with_name(name)
    return str(script) if script.exists() else (shutil.which(name) or name)


class Procs:
    """Every long-lived process the benchmark starts, so each one is ended by its pid."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(args, **kwargs)
        self._procs.append(proc)
        return proc

    def end(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
        """SIGTERM, a bounded wait, then SIGKILL: the process's exit status."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def end_all(self) -> None:
        for proc in list(self._procs):
            self.end(proc)


PROCS = Procs()


def child_env(workspace: Workspace | None = None, **extra: str) -> dict[str, str]:
    """Our environment for children: bench importable, unbuffered, no jobctl profile leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    # An installed jobctl has its bytecode cached; let the first run write it, as pip would.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    if workspace is not None:
        env["XDG_CONFIG_HOME"] = str(workspace.root / "config")
    env.update(extra)
    return env


WORKDIR = Path(__file__).resolve().parent / "out" / "work"


@dataclass
class Workspace:
    """A temporary directory with a development PKI (CA, server, alice) made by `jobd pki init`."""

    root: Path

    @classmethod
    def create(cls) -> Workspace:
        # Beside the project rather than in /tmp, which the test suite also fills: the GiBs of
        # logs a run writes stay in one place, removed after each measurement.
        WORKDIR.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="jobbench-", dir=WORKDIR))
        subprocess.run(
            [tool("jobd"), "pki", "init", "--out", str(root / "pki"), "--user", USER],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return cls(root)

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    def policy(self, run_as: str | None) -> Path:
        """A policy file: alice as task manager, her jobs run as `run_as` (jobd's default: None).

        The measurements run jobs as root, named in the policy, as before jobs had accounts of
        their own: the latency printer is this venv's Python, which may sit where nobody can
        read it (/root). bench/confinement.py measures jobs run as nobody.
        """
        path = self.root / f"policy-{run_as or 'default'}.toml"
        line = f'run_as = "{run_as}"\n' if run_as else ""
        path.write_text(
            f'[users.{USER}]\ngrants = [{{ entity = "self", role = "task-manager" }}]\n{line}'
        )
        return path

    def creds(self, who: str = USER) -> tuple[Path, Path, Path]:
        """(ca, cert, key) of `who` ("server" for the server's)."""
        return self.pki / "ca.pem", self.pki / f"{who}.pem", self.pki / f"{who}.key"

    def jobctl(self, jobd: Jobd) -> list[str]:
        """The jobctl command line, every setting explicit."""
        ca, cert, key = self.creds()
        return [tool("jobctl"), "-s", jobd.target, "-c", str(cert), "-k", str(key), "--ca", str(ca)]

    def shown(self, command: str) -> str:
        """A command as the report shows it: $BENCH for this temp dir, paths from the repo."""
        return command.replace(str(self.root), "$BENCH").replace(f"{REPO}/", "")

    def discard(self, path: Path) -> None:
        """Free the disk space of the files under `path` now, and the files themselves when the
        workspace is removed (at the end of the run).

        Unlinking thousands of job logs between measurements would slow the next ones: on an
        ext4 without a journal (our machines), creating a file passes over every inode of its
        block group deleted in the last one to six minutes, up to ~0.7 ms a file after 20,000
        deletions (bench/analysis.md, "Deleted files slow the next measurement").
        Truncating frees the blocks and deletes no inode.
        """
        for folder, _, names in os.walk(path):
            for name in names:
                file = os.path.join(folder, name)
                if not os.path.islink(file):
                    with contextlib.suppress(OSError):
                        os.truncate(file, 0)

    def create_cost_us(self, files: int = 300) -> float:
        """Microseconds to create an empty file, `files` of them in a new directory: ~20 on a
        quiet disk here, ~10x that for minutes after many deletions (see `discard`). The files
        stay until the workspace is removed."""
        folder = Path(tempfile.mkdtemp(prefix="creates-", dir=self.root))
        begin = time.perf_counter()
        for i in range(files):
            os.close(os.open(folder / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return (time.perf_counter() - begin) / files * 1e6

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Jobd:
    """One `jobd serve` process on 127.0.0.1 with its own data directory."""

    proc: subprocess.Popen[bytes]
    target: str
    data_dir: Path
    log_path: Path
    workspace: Workspace

    @classmethod
    def start(cls, ws: Workspace, name: str, *extra: str) -> Jobd:
        data, log_path = ws.root / f"data-{name}", ws.root / f"jobd-{name}.log"
        ca, cert, key = ws.creds("server")
        args = [tool("jobd"), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)]
        args += ["--ca", str(ca), "--cert", str(cert), "--key", str(key), *extra]
        if "--policy" not in extra:
            args += ["--policy", str(ws.policy(run_as="root"))]
        with log_path.open("wb") as log:
            proc = PROCS.popen(args, stdout=log, stderr=log, env=child_env(ws))
        jobd = cls(proc, "", data, log_path, ws)
        jobd.target = jobd._wait_ready()
        return jobd

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            found = _READY.search(self.log())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"jobd did not become ready:\n{self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) jobd has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        """Resident set size now, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS for jobd")

    def stop(self) -> None:
        PROCS.end(self.proc, timeout=30)
        self.workspace.discard(self.data_dir)  # GiBs of logs: free their space at once

    def run(self, coro: Callable[..., Any], *args: Any) -> Any:
        """Run `coro(stub, *args)` on a fresh verified channel to this jobd, in a new loop."""
        return asyncio.run(_with_stub(self, coro, *args))


async def _with_stub(jobd: Jobd, coro: Callable[..., Any], *args: Any) -> Any:
    from jobservice.api import JobServiceStub, open_channel  # noqa: PLC0415

    ca, cert, key = jobd.workspace.creds()
    channel = await open_channel(jobd.target, ca=ca, cert=cert, key=key)
    try:
        return await coro(JobServiceStub(channel), *args)
    finally:
        channel.close()


def timed_run(
    args: Sequence[str],
    *,
    stdout: int | IO[bytes] = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> float:
    """Seconds one command takes, start to exit; it must succeed."""
    begin = time.perf_counter()
    proc = subprocess.run(
        args, stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - begin
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def machine_cpu() -> float:
    """CPU seconds every core of the machine has been busy so far (/proc/stat: user, nice,
    system, irq and softirq; not the time the hypervisor took, nor guests, which user holds),
    kernel threads included: where the kernel defers work, a process's own figures miss it."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds (user + system) used so far by our children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def first_byte(args: Sequence[str], *, env: dict[str, str] | None = None) -> float:
    """Seconds from starting a command to the first byte on its stdout (it must then succeed)."""
    begin = time.perf_counter()
    proc = PROCS.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    elapsed = time.perf_counter() - begin
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        PROCS.end(proc)
    if not first or proc.returncode != 0:
        raise RuntimeError(f"{args[0]} exited {proc.returncode}: {err.decode()[-500:]}")
    return elapsed


def alternate(variants: Sequence[tuple[str, Callable[[], T]]], rounds: int) -> dict[str, list[T]]:
    """Run the variants A B C A B C ... `rounds` times; each one's samples, in order."""
    samples: dict[str, list[T]] = {name: [] for name, _ in variants}
    for _ in range(rounds):
        for name, run in variants:
            samples[name].append(run())
    return samples


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Row:
    """One figure: a median over alternated samples, its reference, and its target."""

    label: str
    unit: str
    samples: list[float]
    higher_is_better: bool = True
    reference: str = ""  # what the ratio is against
    ref_value: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def value(self) -> float:
        return median(self.samples)

    @property
    def ratio(self) -> float | None:
        if self.ref_value is None or not self.ref_value:
            return None
        return self.value / self.ref_value

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        fields = ("label", "unit", "samples", "reference", "ref_value", "target", "met", "note")
        higher = data.get("higher", True)
        return cls(**{name: data[name] for name in fields}, higher_is_better=higher)

    def to_json(self) -> dict[str, Any]:
        return {
            "higher": self.higher_is_better,
            "label": self.label,
            "unit": self.unit,
            "value": self.value,
            "samples": self.samples,
            "reference": self.reference,
            "ref_value": self.ref_value,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Section:
    """One measurement's rows, the exact commands it ran, notes, and data for the plots."""

    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plot: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Section:
        rows = [Row.from_json(row) for row in data["rows"]]
        fields = (data["commands"], data["notes"], data["plot"], data.get("seconds", 0.0))
        return cls(data["key"], data["title"], rows, *fields)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "rows": [row.to_json() for row in self.rows],
            "commands": self.commands,
            "notes": self.notes,
            "plot": self.plot,
            "seconds": self.seconds,
        }


def fmt(value: float | None, unit: str) -> str:
    """A figure as people read it: no false precision."""
    if value is None or value != value:  # NaN
        return "-"
    if unit in {"ms"}:
        return f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
    if unit in {"MiB", "x"}:
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def ratio_text(row: Row) -> str:
    return f"{row.ratio:.2f}x {row.reference}" if row.ratio is not None else ""


def met_text(row: Row) -> str:
    if row.met is None:
        return row.target
    return f"{row.target} {'yes' if row.met else 'NO'}"


def format_table(sections: Sequence[Section]) -> str:
    """A plain-text table of every row, for the terminal."""
    lines: list[str] = []
    for section in sections:
        lines.append(f"\n== {section.title} ({section.seconds:.0f} s)")
        for row in section.rows:
            value = f"{fmt(row.value, row.unit)} {row.unit}"
            line = f"  {row.label:<44} {value:>14}  {ratio_text(row):<22} {met_text(row)}"
            lines.append(f"{line.rstrip()}   ({row.note})" if row.note else line.rstrip())
        lines.extend(f"  note: {note}" for note in section.notes)
    return "\n".join(lines)


@dataclass(frozen=True)
class Scale:
    """How much to do: the full run behind docs/benchmarks.md, or a quick smoke run."""

    quick: bool
    rounds: int
    output_bytes: int
    fanout_bytes: int
    fanout: tuple[tuple[int, int], ...]  # (followers, rounds): 64 x 256 MiB is 16 GiB a run
    latency_lines: int
    start_jobs: int
    oneshot_runs: int
    memory_jobs: int
    memory_bytes: int

    @classmethod
    def full(cls) -> Scale:
        return cls(False, 5, GIB, 256 * MIB, ((1, 5), (8, 5), (64, 2)), 200, 500, 10, 10_000, GIB)

    @classmethod
    def smoke(cls) -> Scale:
        return cls(True, 2, 64 * MIB, 16 * MIB, ((1, 2), (8, 2)), 50, 100, 3, 300, 64 * MIB)


@dataclass
class Context:
    """What every measurement gets: the workspace, the scale, and the private sshd if any."""

    ws: Workspace
    scale: Scale
    ssh: list[str] | None  # `ssh ... 127.0.0.1` up to the remote command, or None
    ssh_note: str = ""


async def start_job(stub: Any, argv: Sequence[str]) -> int:
    """Start argv[0] with argv[1:] as a job; its id."""
    from jobservice.api.v1 import jobservice_pb2 as pb  # noqa: PLC0415

    reply = await stub.Start(pb.StartRequest(command=argv[0], args=list(argv[1:])))
    job_id: int = reply.job_id
    return job_id


async def wait_exited(stub: Any, job_id: int) -> Any:
    """The job's final status, polled (a benchmark may poll; the product never does)."""
    from jobservice.api.v1 import jobservice_pb2 as pb  # noqa: PLC0415

    async with asyncio.timeout(_JOB_TIMEOUT):
        while True:
            reply = await stub.Status(pb.StatusRequest(job_id=job_id))
            if reply.status.state == pb.JOB_STATE_EXITED:
                return reply.status
            await asyncio.sleep(0.01)
