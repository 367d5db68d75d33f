"""Start rate: /bin/true jobs started per second over one connection, vs a bare Popen loop.

Also the cost of durability: the same pipelined starts against a jobd that keeps its job
records in memory only (`--no-store`), alternated in the same run (target: >= 90%).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

from bench.harness import Context, Jobd, Row, Section, alternate, median, start_job

__all__ = ["run", "starts"]

_TARGET = 1000.0  # jobs/s
_WINDOW = 16  # Start calls in flight at once in the pipelined variant
_STORE_TARGET = 0.9  # of the rate without the store


def run(ctx: Context) -> Section:
    n = ctx.scale.start_jobs
    section = Section("startrate", f"Start rate: {n} x /bin/true per run")
    jobd = Jobd.start(ctx.ws, "startrate")
    memory_only = Jobd.start(ctx.ws, "startrate-nostore", "--no-store")
    cpu: list[float] = []

    def pipelined() -> float:
        used = jobd.cpu_seconds()
        rate: float = jobd.run(starts, n, _WINDOW)
        cpu.append((jobd.cpu_seconds() - used) / n * 1000)
        return rate

    try:
        rates = alternate(
            [
                ("popen", lambda: _popen_floor(n)),
                ("sequential", lambda: jobd.run(starts, n, 1)),
                ("pipelined", pipelined),
                ("nostore", lambda: memory_only.run(starts, n, _WINDOW)),
            ],
            ctx.scale.rounds,
        )
    finally:
        jobd.stop()
        memory_only.stop()
    floor = Row("floor: subprocess.Popen(['/bin/true']).wait() loop", "jobs/s", rates["popen"])
    sequential = Row("Start over one connection, 1 in flight", "jobs/s", rates["sequential"])
    window = Row(f"Start over one connection, {_WINDOW} in flight", "jobs/s", rates["pipelined"])
    for row in (sequential, window):
        row.reference, row.ref_value = "Popen floor", floor.value
        row.target, row.met = f">= {_TARGET:.0f}/s", row.value >= _TARGET
    window.note = f"jobd CPU {median(cpu):.2f} ms per start; job records in SQLite"
    nostore = Row(
        f"Start, {_WINDOW} in flight, records in memory only (--no-store)",
        "jobs/s",
        rates["nostore"],
    )
    durable = Row(
        f"Start, {_WINDOW} in flight, with the SQLite store", "jobs/s", rates["pipelined"]
    )
    durable.reference, durable.ref_value = "--no-store", nostore.value
    durable.target = f">= {_STORE_TARGET:.0%} of --no-store"
    durable.met = (durable.ratio or 0.0) >= _STORE_TARGET
    section.rows = [window, sequential, floor, durable, nostore]
    section.commands = [
        f"jobservice: {n} x StartRequest(command='/bin/true') on one mTLS channel, "
        f"awaited one at a time, or {_WINDOW} at a time (asyncio tasks)",
        f"floor: for _ in range({n}): subprocess.Popen(['/bin/true']).wait()   # in Python",
        "store: the same pipelined starts against jobd serve (SQLite, WAL, synchronous=FULL, "
        "group commit) and jobd serve --no-store, alternated",
    ]
    section.plot = {"rates": rates}
    return section


def _popen_floor(n: int) -> float:
    begin = time.perf_counter()
    for _ in range(n):
        subprocess.Popen(["/bin/true"]).wait()
    return n / (time.perf_counter() - begin)


async def starts(stub: Any, n: int, window: int) -> float:
    """Jobs started per second: `window` workers each starting its share one after another."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await start_job(stub, ["/bin/true"])

    shares = [n // window + (i < n % window) for i in range(window)]
    begin = time.perf_counter()
    await asyncio.gather(*(worker(share) for share in shares))
    return n / (time.perf_counter() - begin)
