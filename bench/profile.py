"""Profiles behind docs/benchmarks.md "What bounds each figure": py-spy on jobd and its clients.

.venv/bin/pip install py-spy                  # once; not a project dependency
.venv/bin/python bench/profile.py output      # jobd + `jobctl output` reading 1 GiB
.venv/bin/python bench/profile.py start       # jobd under pipelined Start calls
.venv/bin/python bench/profile.py imports     # what a cold `jobctl status` imports
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import GIB, PROCS, PY, Jobd, Workspace, child_env, start_job, wait_exited
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("output", "start", "imports"))
    args = parser.parse_args(argv)
    ws = Workspace.create()
    try:
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
