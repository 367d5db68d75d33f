"""Fan-out: 1, 8 and 64 followers of one live job printing 256 MiB; MB/s and the job's slowdown."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

from bench.harness import (
    MB,
    PROCS,
    PY,
    Context,
    Jobd,
    Row,
    Section,
    child_env,
    median,
    start_job,
    wait_exited,
)

__all__ = ["run"]

_TARGET_8 = 1000.0  # MB/s, the target for 8 followers together
_PROCESSES = max(1, min(2, os.cpu_count() or 1))  # follower processes: one per core at most


def run(ctx: Context) -> Section:
    size = ctx.scale.fanout_bytes
    section = Section("fanout", f"Fan-out: followers of one live job printing {size >> 20} MiB")
    jobd = Jobd.start(ctx.ws, "fanout")
    alone: list[float] = []
    runs: dict[int, list[dict[str, float]]] = {n: [] for n, _ in ctx.scale.fanout}
    try:
        for round_ in range(max(rounds for _, rounds in ctx.scale.fanout)):
            for count, rounds in ctx.scale.fanout:  # alternate: no followers, then `count`
                if round_ < rounds:
                    alone.append(_one(ctx, jobd, 0)["job_seconds"])
                    runs[count].append(_one(ctx, jobd, count))
    finally:
        jobd.stop()
    section.rows = _rows(alone, runs)
    section.commands = [
        f"job: head -c {size} /dev/zero (started over one connection)",
        f"followers: python -m bench.clients follow TARGET PKI N/{_PROCESSES}"
        f"   # {_PROCESSES} processes on uvloop (as jobctl output), one mTLS connection and "
        "Output call per follower",
    ]
    section.notes += [
        f"Followers run in {_PROCESSES} client processes on the same cores as jobd; the "
        "aggregate is bytes received by all followers over the wall time from Start to the "
        "last follower's last byte. CPU figures are per GB delivered to followers.",
        "Rounds: " + ", ".join(f"{n} follower(s) x{r}" for n, r in ctx.scale.fanout) + " (each "
        "alternated with a run without followers); 64 followers move 16 GiB a run, so fewer "
        "rounds keep `make bench` within its ten minutes.",
    ]
    section.plot = {"alone": alone, "runs": {str(n): r for n, r in runs.items()}}
    return section


def _one(ctx: Context, jobd: Jobd, count: int) -> dict[str, float]:
    """One job with `count` followers attached from its start: its run time and the MB/s."""
    shares = [count // _PROCESSES + (i < count % _PROCESSES) for i in range(_PROCESSES)]
    followers = [_spawn(ctx, jobd, n) for n in shares if n]
    try:
        for proc in followers:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError("a follower process did not get ready")
        cpu = jobd.cpu_seconds()
        begin = time.monotonic()
        job_id: int = jobd.run(start_job, ["head", "-c", str(ctx.scale.fanout_bytes), "/dev/zero"])
        results = [_result(proc, job_id) for proc in followers]
        cpu = jobd.cpu_seconds() - cpu
        final = jobd.run(wait_exited, job_id)
    finally:
        for proc in followers:
            PROCS.end(proc)
    job_seconds = (final.ended_at.ToNanoseconds() - final.started_at.ToNanoseconds()) / 1e9
    total = sum(sum(r["bytes"]) for r in results)
    if total != count * ctx.scale.fanout_bytes:
        raise RuntimeError(f"followers got {total} bytes, expected {count} x fanout_bytes")
    done = max((r["done"] for r in results), default=begin)
    rate = total / MB / (done - begin) if count else 0.0
    gb = total / 1e9 or 1.0
    client_cpu = sum(r["cpu"] for r in results)
    return {
        "job_seconds": job_seconds,
        "mbps": rate,
        "jobd_cpu": cpu / gb,
        "client_cpu": client_cpu / gb,
    }


def _spawn(ctx: Context, jobd: Jobd, count: int) -> subprocess.Popen[bytes]:
    args = [PY, "-m", "bench.clients", "follow", jobd.target, str(ctx.ws.pki), str(count)]
    return PROCS.popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(ctx.ws))


def _result(proc: subprocess.Popen[bytes], job_id: int) -> dict[str, Any]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(f"{job_id}\n".encode())
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a follower process exited with {proc.wait(30)}")
    result: dict[str, Any] = json.loads(line)
    return result


def _rows(alone: list[float], runs: dict[int, list[dict[str, float]]]) -> list[Row]:
    base = Row("job alone: run time (no followers)", "ms", [s * 1000 for s in alone], False)
    rows = [base]
    single = median([r["mbps"] for r in runs.get(1, [])]) if 1 in runs else None
    for count, results in runs.items():
        rate = Row(f"{count} follower(s): aggregate", "MB/s", [r["mbps"] for r in results])
        if count > 1 and single:
            rate.reference, rate.ref_value = "1 follower", single
        if count == 8:
            rate.target, rate.met = f">= {_TARGET_8:.0f} MB/s", rate.value >= _TARGET_8
        jobd_cpu = median([r["jobd_cpu"] for r in results])
        client_cpu = median([r["client_cpu"] for r in results])
        rate.note = f"CPU-s per GB: jobd {jobd_cpu:.2f}, followers {client_cpu:.2f}"
        slowed = Row(
            f"{count} follower(s): job run time",
            "ms",
            [r["job_seconds"] * 1000 for r in results],
            False,
            "alone",
            base.value,
        )
        rows += [rate, slowed]
    return rows
