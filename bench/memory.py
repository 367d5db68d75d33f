"""Memory: jobd's RSS idle, with many finished jobs, and while a job prints 1 GiB."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

from bench.harness import (
    PROCS,
    PY,
    Context,
    Jobd,
    Row,
    Section,
    alternate,
    child_env,
    median,
    start_job,
)

__all__ = ["run"]

_TARGET_IDLE = 40.0  # MiB
_TARGET_GROWTH = 20.0  # MiB over the RSS before the output began
_WINDOW = 16
_SAMPLE_EVERY = 0.01


def run(ctx: Context) -> Section:
    jobs, size = ctx.scale.memory_jobs, ctx.scale.memory_bytes
    section = Section("memory", "Memory: jobd resident set size (VmRSS)")
    jobd = Jobd.start(ctx.ws, "memory")
    try:
        idle = _settled(jobd)
        jobd.run(_one_call)  # jobd loads `cryptography` to read its first caller's certificate
        served = _settled(jobd)
        jobd.run(_start_many, jobs)
        many = _settled(jobd)
        rounds = max(2, ctx.scale.rounds - 2)  # each run writes `size` bytes of log to disk
        runs = alternate(
            [
                ("plain", lambda: jobd.run(_peak_while, jobd.pid, None, size)),
                ("stalled", lambda: _with_stalled_follower(ctx, jobd)),
            ],
            rounds,
        )
        after = _settled(jobd)
    finally:
        jobd.stop()
    section.rows = _rows(idle, served, many, runs, after, jobs)
    section.commands = [
        "RSS: VmRSS from /proc/PID/status of the jobd process, sampled every 10 ms",
        f"finished jobs: {jobs} x StartRequest(command='/bin/true'), {_WINDOW} in flight",
        f"output: head -c {size} /dev/zero as a job; peak RSS from its start to its exit",
        f"stalled follower: python -m bench.clients stall TARGET PKI {size}"
        "   # opens Output, never reads",
    ]
    section.plot = {"idle": idle, "runs": runs}
    section.notes.append(f"{rounds} alternated rounds of the two output runs.")
    return section


def _settled(jobd: Jobd) -> float:
    """RSS once things are quiet: the median of a few samples over half a second."""
    time.sleep(0.5)
    samples = []
    for _ in range(5):
        samples.append(jobd.rss_mib())
        time.sleep(0.1)
    return median(samples)


async def _start_many(stub: Any, n: int) -> None:
    async def worker(count: int) -> None:
        for _ in range(count):
            await start_job(stub, ["/bin/true"])

    await asyncio.gather(*(worker(n // _WINDOW + (i < n % _WINDOW)) for i in range(_WINDOW)))


async def _peak_while(stub: Any, pid: int, job_id: int | None, size: int) -> dict[str, float]:
    """Start the job (unless given), sample jobd's RSS until it has exited: before and peak."""
    from jobservice.api.v1 import jobservice_pb2 as pb  # noqa: PLC0415

    before = _rss(pid)
    if job_id is None:
        job_id = await start_job(stub, ["head", "-c", str(size), "/dev/zero"])
    peak = before
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        peak = max(peak, _rss(pid))
        reply = await stub.Status(pb.StatusRequest(job_id=job_id))
        if reply.status.state == pb.JOB_STATE_EXITED:
            break
        await asyncio.sleep(_SAMPLE_EVERY)
    return {"before": before, "peak": peak}


def _with_stalled_follower(ctx: Context, jobd: Jobd) -> dict[str, float]:
    """A client process starts the job and opens its output, never reading; we watch jobd."""
    args = [PY, "-m", "bench.clients", "stall", jobd.target, str(ctx.ws.pki)]
    before = jobd.rss_mib()
    proc = PROCS.popen(
        [*args, str(ctx.scale.memory_bytes)], stdout=subprocess.PIPE, env=child_env(ctx.ws)
    )
    try:
        assert proc.stdout is not None
        job_id = json.loads(proc.stdout.readline())["job_id"]
        result: dict[str, float] = jobd.run(_peak_while, jobd.pid, job_id, 0)
    finally:
        PROCS.end(proc)
    result["before"] = before
    return result


def _rss(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def _one_call(stub: Any) -> None:
    from jobservice.api.v1 import jobservice_pb2 as pb  # noqa: PLC0415

    await stub.List(pb.ListRequest())


def _rows(
    idle: float,
    served: float,
    many: float,
    runs: dict[str, list[dict[str, float]]],
    after: float,
    jobs: int,
) -> list[Row]:
    idle_row = Row("idle, after start-up", "MiB", [idle], False)
    idle_row.target, idle_row.met = f"< {_TARGET_IDLE:.0f} MiB", idle < _TARGET_IDLE
    served_row = Row("after its first call", "MiB", [served], False, "idle", idle)
    served_row.note = "cryptography loaded on first use, to read the caller's certificate"
    many_row = Row(f"with {jobs:,} finished jobs", "MiB", [many], False, "first call", served)
    many_row.note = f"+{(many - served) * 1024 / jobs:.1f} KiB per finished job"
    rows = [idle_row, served_row, many_row]
    for name, label in (("plain", "no follower"), ("stalled", "a stalled follower")):
        growth = [r["peak"] - r["before"] for r in runs[name]]
        peak = Row(f"peak while a job prints, {label}", "MiB", [r["peak"] for r in runs[name]])
        peak.higher_is_better = False
        peak.reference, peak.ref_value = "before", median([r["before"] for r in runs[name]])
        peak.target = f"<= +{_TARGET_GROWTH:.0f} MiB"
        peak.met = median(growth) <= _TARGET_GROWTH
        peak.note = f"growth +{median(growth):.1f} MiB (max +{max(growth):.1f})"
        rows.append(peak)
    rows.append(Row("after the output runs, settled", "MiB", [after], False, "idle", idle))
    return rows
