"""Live latency: a job prints a timestamped line every 10 ms; delay from write to a follower."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence

from bench.clients import LineClock, printer_argv
from bench.harness import (
    PROCS,
    PY,
    Context,
    Jobd,
    Row,
    Section,
    alternate,
    child_env,
    percentile,
)

__all__ = ["run"]

_GAP = 0.010
_TARGET_P99 = 2.0  # ms


def run(ctx: Context) -> Section:
    lines = ctx.scale.latency_lines
    section = Section(
        "latency", f"Live latency: a line every {_GAP * 1000:.0f} ms, write to arrival"
    )
    jobd = Jobd.start(ctx.ws, "latency")
    try:
        variants = _variants(ctx, jobd, section)
        delays = alternate(variants, ctx.scale.rounds)
    finally:
        jobd.stop()
    pooled = {name: [d for run in runs for d in run] for name, runs in delays.items()}
    section.rows = _rows(pooled, lines * ctx.scale.rounds)
    section.notes.append(
        f"{ctx.scale.rounds} alternated rounds of {lines} lines per path, pooled; the delay is "
        "time.time_ns() at arrival minus the timestamp the job wrote (one host, one clock)."
    )
    section.plot = {"delays_ms": pooled}
    return section


def _variants(
    ctx: Context, jobd: Jobd, section: Section
) -> list[tuple[str, Callable[[], list[float]]]]:
    lines = ctx.scale.latency_lines
    printer = printer_argv(PY, lines, _GAP)
    follower = [PY, "-m", "bench.clients", "latency", jobd.target, str(ctx.ws.pki)]
    follower += [str(lines), str(_GAP)]
    variants: list[tuple[str, Callable[[], list[float]]]] = [
        ("jobservice", lambda: _jobservice(follower, ctx)),
        ("pipe", lambda: _read_lines(printer)),
    ]
    section.commands += [
        "job: python -c PRINTER (prints time.time_ns() and flushes, every 10 ms)",
        "jobservice: python -m bench.clients latency TARGET PKI "
        f"{lines} {_GAP}   # Start + Output on one mTLS connection",
        "pipe: python -c PRINTER | reader   # the same printer, read from a local pipe",
    ]
    if ctx.ssh is not None:
        ssh = [*ctx.ssh, shlex.join(printer_argv("python3", lines, _GAP))]
        variants.append(("ssh", lambda: _read_lines(ssh)))
        section.commands.append(f"ssh: {shlex.join(ctx.ssh)} python3 -c PRINTER | reader")
    return variants


def _jobservice(follower: Sequence[str], ctx: Context) -> list[float]:
    done = subprocess.run(
        follower, capture_output=True, env=child_env(ctx.ws), timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"latency follower failed: {done.stderr.decode()[-500:]}")
    delays: list[float] = json.loads(done.stdout)["delays_ms"]
    return delays


def _read_lines(args: Sequence[str]) -> list[float]:
    """Run a printer and time each line as it arrives on our end of its stdout pipe."""
    proc = PROCS.popen(args, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    clock = LineClock()
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            data = os.read(fd, 1 << 16)
            if not data:
                break
            clock.feed(data, time.time_ns())
    finally:
        PROCS.end(proc)
    return clock.delays_ms


def _rows(pooled: dict[str, list[float]], expected: int) -> list[Row]:
    names = {
        "jobservice": "jobservice follower",
        "ssh": "ssh -c aes256-gcm (private sshd)",
        "pipe": "local pipe",
    }
    rows = []
    for name in ("jobservice", "ssh", "pipe"):
        if name not in pooled:
            continue
        delays = pooled[name]
        for label, q in (("p50", 50.0), ("p99", 99.0), ("max", 100.0)):
            row = Row(f"{names[name]}: {label}", "ms", [percentile(delays, q)], False)
            row.note = f"{len(delays)} lines" if len(delays) != expected else ""
            rows.append(row)
    _compare(rows, pooled)
    return rows


def _compare(rows: list[Row], pooled: dict[str, list[float]]) -> None:
    """Each jobservice percentile against ssh's (or the pipe's), and the p99 target."""
    ref = "ssh" if "ssh" in pooled else "pipe"
    for row, q in zip(rows[:3], (50.0, 99.0, 100.0), strict=True):
        row.reference, row.ref_value = ref, percentile(pooled[ref], q)
        if q == 99.0:
            row.target, row.met = f"< {_TARGET_P99:g} ms", row.value < _TARGET_P99
