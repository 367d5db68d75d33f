"""Profiles behind docs/benchmarks.md "What bounds each figure": py-spy on jobd and its clients.

.venv/bin/pip install py-spy                  # once; not a project dependency
.venv/bin/python bench/profile.py output      # jobd + `jobctl output` reading 1 GiB
.venv/bin/python bench/profile.py start       # jobd under pipelined Start calls
.venv/bin/python bench/profile.py imports     # what a cold `jobctl status` imports
.venv/bin/python bench/profile.py cluster-start    # CPU per start of every cluster process
.venv/bin/python bench/profile.py cluster-output   # the front, an agent and `jobctl output`
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    GIB,
    OUT,
    PROCS,
    PY,
    Jobd,
    Workspace,
    child_env,
    children_cpu,
    start_job,
    wait_exited,
)
from bench.startrate import starts

__all__ = ["main", "summarize"]

_RATE = "250"  # samples per second


def _spy() -> str:
    found = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is missing: .venv/bin/pip install py-spy")
    return found


def _record_pid(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on a running process, without pausing it (--nonblocking)."""
    args = [_spy(), "record", "--nonblocking", "-r", _RATE, "-f", "raw", "-o", str(out)]
    args += ["-p", str(pid), "-d", str(int(seconds))]
    return PROCS.popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, top: int = 15) -> str:
    """Self time per function from py-spy's collapsed stacks, as percentages of samples."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frame = re.sub(r" \(/\S+/(site-packages|python3\.\d+|src)/", " (", stack.split(";")[-1])
        own[frame] += int(count)
        total += int(count)
    lines = [f"{raw.stem}: {total} samples, self time"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines)


def _output(ws: Workspace, jobd: Jobd) -> list[Path]:
    job_id: int = jobd.run(_job_of, GIB)
    server, client = ws.root / "jobd-output.txt", ws.root / "jobctl-output.txt"
    spy = _record_pid(jobd.pid, 6, server)
    args = [_spy(), "record", "--nonblocking", "-r", _RATE, "-f", "raw", "-o", str(client)]
    subprocess.run(
        [*args, "--", *ws.jobctl(jobd), "output", str(job_id)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(ws),
        timeout=120,
        check=True,
    )
    spy.wait(30)
    return [server, client]


async def _job_of(stub: object, size: int) -> int:
    job_id = await start_job(stub, ["head", "-c", str(size), "/dev/zero"])
    await wait_exited(stub, job_id)
    return job_id


def _start(ws: Workspace, jobd: Jobd) -> list[Path]:
    server = ws.root / "jobd-start.txt"
    spy = _record_pid(jobd.pid, 4, server)
    time.sleep(0.3)
    rate = jobd.run(starts, 3000, 16)
    spy.wait(30)
    print(f"{rate:.0f} jobs/s while profiled")
    return [server]


def _imports(ws: Workspace, jobd: Jobd) -> None:
    job_id: int = jobd.run(_job_of, 1)
    entry = "import sys; from jobservice.cli.jobctl import main; sys.exit(main(sys.argv[1:]))"
    args = [PY, "-X", "importtime", "-c", entry]
    cli = ws.jobctl(jobd)[1:]  # the same flags, run through the interpreter for -X
    done = subprocess.run(
        [*args, *cli, "status", str(job_id)],
        capture_output=True,
        env=child_env(ws),
        timeout=60,
        check=False,
    )
    rows = []
    for line in done.stderr.decode().splitlines()[1:]:
        parts = line.split("|")
        if len(parts) == 3 and parts[2].startswith(" ") and not parts[2].startswith("  "):
            rows.append((int(parts[1]), parts[2].strip()))  # top-level imports only
    print("cold `jobctl status`: top-level imports, cumulative ms")
    for micros, name in sorted(rows, reverse=True)[:15]:
        print(f"  {micros / 1000:6.1f}  {name}")


def _cpu(pid: int, children: bool = False) -> float:
    """CPU seconds of `pid` so far (or of its children it has waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cluster(ws: Workspace, what: str, spy: bool) -> list[Path]:
    """The cluster of bench/cluster.py: CPU per start (or per MB) of each process, profiles."""
    from bench import cluster  # noqa: PLC0415
    from bench.harness import Context, Scale  # noqa: PLC0415

    ctx = Context(ws, Scale.smoke(), None)
    front, agents, servers = cluster.setup(ctx)
    procs = {"front": front.pid, **{f"agent-{i + 1}": a.proc.pid for i, a in enumerate(agents)}}
    procs |= {f"nats-{i + 1}": s.pid for i, s in enumerate(servers)}
    raws = []
    spies = []
    if spy:
        for name in ("front", "agent-1"):
            raws.append(ws.root / f"cluster-{what}-{name}.txt")
            spies.append(_record_pid(procs[name], 5, raws[-1]))
        time.sleep(0.3)
    perf = None
    if spy and shutil.which("perf"):  # the Go servers: perf, as py-spy cannot read them
        pids = ",".join(str(s.pid) for s in servers)
        perf_data = ws.root / "nats.perf"
        perf = PROCS.popen(
            ["perf", "record", "-F", "250", "-g", "-o", str(perf_data), "-p", pids],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    before = {name: _cpu(pid) for name, pid in procs.items()}
    jobs = sum(_cpu(a.proc.pid, children=True) for a in agents)
    client = _self_cpu()
    if what == "start":
        n = 2000 if spy else 1000
        begin = time.perf_counter()
        rate = front.run(starts, n, 16)
        elapsed = time.perf_counter() - begin
        print(f"{rate:.0f} jobs/s, {n} starts, {16} in flight{' (profiled)' if spy else ''}")
        unit, per = "ms per start", n / 1000
    else:
        size = 256 << 20
        job_id = front.run(_job_of, size)
        before = {name: _cpu(pid) for name, pid in procs.items()}
        client = children_cpu()
        args = [*ws.jobctl(front), "output", str(job_id)]
        begin = time.perf_counter()
        subprocess.run(args, stdout=subprocess.DEVNULL, env=child_env(ws), timeout=120, check=True)
        elapsed = time.perf_counter() - begin
        print(f"{size / 1e6 / elapsed:.0f} MB/s, {size >> 20} MiB{' (profiled)' if spy else ''}")
        unit, per = "CPU-ms per MB", size / 1e6 / 1000
    used = {name: _cpu(pid) - before[name] for name, pid in procs.items()}
    if what == "output":
        used["jobctl"] = children_cpu() - client
    else:
        used["client"] = _self_cpu() - client
        used["jobs"] = sum(_cpu(a.proc.pid, children=True) for a in agents) - jobs
    total = sum(used.values())
    print(f"{unit} (wall {elapsed / per:.2f}):")
    for name, seconds in [*used.items(), ("sum", total)]:
        print(f"  {name:8} {seconds / per:6.2f}")
    for s in spies:
        s.wait(30)
    if perf is not None:
        PROCS.end(perf, timeout=30)  # SIGTERM: perf writes its data and exits
        report = ws.root / "cluster-nats-perf.txt"
        with report.open("wb") as out:
            subprocess.run(
                ["perf", "report", "-i", str(perf_data), "--no-children", "--sort", "sym",
                 "--stdio", "-g", "none", "--percent-limit", "1"],
                stdout=out, stderr=subprocess.DEVNULL, timeout=120, check=False,
            )  # fmt: skip
        print(report.read_text()[:6000])
    return raws


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", choices=("output", "start", "imports", "cluster-start", "cluster-output")
    )
    parser.add_argument("--no-spy", action="store_true", help="cluster: CPU figures only")
    args = parser.parse_args(argv)
    ws = Workspace.create()
    try:
        if args.what.startswith("cluster-"):
            for raw in _cluster(ws, args.what.removeprefix("cluster-"), not args.no_spy):
                print(summarize(raw))
                OUT.mkdir(exist_ok=True)
                shutil.copy(raw, OUT / raw.name)  # for flame graphs: py-spy's raw format
            return 0
        jobd = Jobd.start(ws, "profile")
        if args.what == "imports":
            _imports(ws, jobd)
        else:
            raws = _output(ws, jobd) if args.what == "output" else _start(ws, jobd)
            for raw in raws:
                print(summarize(raw))
    finally:
        PROCS.end_all()
        ws.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
