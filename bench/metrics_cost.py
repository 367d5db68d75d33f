"""What jobd's metrics cost: Status calls one at a time, metrics on vs off, in alternated rounds.

python bench/metrics_cost.py [--rounds 7] [--calls 1000]

Two jobd processes run side by side, one with --metrics-listen, one without; each round makes
`calls` Status calls one after another on one connection to each, in turn, and notes the calls
per second and jobd's CPU time per call. Prints the medians and their ratios (docs/benchmarks.md,
"Metrics").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in {None, ""}:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PROCS, Jobd, Workspace, alternate, median, start_job, wait_exited

__all__ = ["main"]


async def _statuses(stub: Any, job_id: int, calls: int) -> float:
    """Seconds for `calls` Status calls, one at a time."""
    from jobservice.api import pb  # noqa: PLC0415

    request = pb.StatusRequest(job_id=job_id)
    for _ in range(50):  # warm the connection and the code paths
        await stub.Status(request)
    begin = time.perf_counter()
    for _ in range(calls):
        await stub.Status(request)
    return time.perf_counter() - begin


async def _finished_job(stub: Any) -> int:
    job_id: int = await start_job(stub, ["true"])
    await wait_exited(stub, job_id)
    return job_id


def _round(jobd: Jobd, job_id: int, calls: int) -> tuple[float, float]:
    """(calls per second, jobd CPU microseconds per call) for one round."""
    cpu = jobd.cpu_seconds()
    seconds: float = jobd.run(_statuses, job_id, calls)
    return calls / seconds, (jobd.cpu_seconds() - cpu) / calls * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args(argv)
    ws = Workspace.create()
    try:
        on = Jobd.start(ws, "metrics-on", "--metrics-listen", "127.0.0.1:0")
        off = Jobd.start(ws, "metrics-off")
        jobs = {"on": on.run(_finished_job), "off": off.run(_finished_job)}
        samples = alternate(
            [
                ("on", lambda: _round(on, jobs["on"], args.calls)),
                ("off", lambda: _round(off, jobs["off"], args.calls)),
            ],
            args.rounds,
        )
        rate = {name: median([s[0] for s in runs]) for name, runs in samples.items()}
        cpu = {name: median([s[1] for s in runs]) for name, runs in samples.items()}
        print(f"Status one at a time, {args.rounds} alternated rounds of {args.calls} calls:")
        for label, figures, unit in (("calls", rate, "/s"), ("jobd CPU per call", cpu, " us")):
            no, yes = figures["off"], figures["on"]
            print(f"  {label}: off {no:.0f}{unit}, on {yes:.0f}{unit}, x{yes / no:.3f}")
        print(f"  all rounds (calls/s): off {[round(s[0]) for s in samples['off']]}")
        print(f"                        on  {[round(s[0]) for s in samples['on']]}")
    finally:
        PROCS.end_all()
        ws.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
