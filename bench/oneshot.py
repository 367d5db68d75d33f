"""One-shot latency: cold `jobctl status`, `jobctl run -- echo ready` vs a fresh `ssh ... true`."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from bench.harness import (
    PY,
    Context,
    Jobd,
    Row,
    Section,
    alternate,
    first_byte,
    start_job,
    timed_run,
    wait_exited,
)

__all__ = ["run"]

_TARGET_STATUS = 100.0  # ms
_TARGET_RUN = 120.0  # ms, to the first byte
_FAST_KEX = "curve25519-sha256"


async def _finished_job(stub: object) -> int:
    job_id = await start_job(stub, ["echo", "done"])
    await wait_exited(stub, job_id)
    return job_id


def run(ctx: Context) -> Section:
    section = Section("oneshot", "One-shot latency: a new process each time (page cache warm)")
    jobd = Jobd.start(ctx.ws, "oneshot")
    try:
        job_id: int = jobd.run(_finished_job)
        variants = _variants(ctx, jobd, job_id, section)
        seconds = alternate(variants, ctx.scale.oneshot_runs)
    finally:
        jobd.stop()
    ms = {name: [s * 1000 for s in runs] for name, runs in seconds.items()}
    section.rows = _rows(ms)
    section.notes.append(f"{ctx.scale.oneshot_runs} alternated runs of each command.")
    section.plot = {"ms": ms}
    return section


def _variants(
    ctx: Context, jobd: Jobd, job_id: int, section: Section
) -> list[tuple[str, Callable[[], float]]]:
    jobctl = ctx.ws.jobctl(jobd)
    status = [*jobctl, "status", str(job_id)]
    run_ready = [*jobctl, "run", "--", "echo", "ready"]
    floor = [PY, "-c", "pass"]
    variants: list[tuple[str, Callable[[], float]]] = [
        ("status", lambda: timed_run(status)),
        ("run", lambda: first_byte(run_ready)),
        ("python", lambda: timed_run(floor)),
    ]
    section.commands += [
        f"{shlex.join(status)}   # start to exit",
        f"{shlex.join(run_ready)}   # start to first byte on stdout",
        f"{PY} -c pass   # the interpreter's own start-up, a floor for any Python CLI",
    ]
    if ctx.ssh is not None:
        ssh_true, ssh_ready = [*ctx.ssh, "true"], [*ctx.ssh, "echo ready"]
        # OpenSSH 9's default key exchange is the post-quantum hybrid sntrup761x25519; plain
        # curve25519 is the fastest handshake it offers, the strictest reference for us.
        ssh_fast = [*ctx.ssh[:-1], "-o", f"KexAlgorithms={_FAST_KEX}", ctx.ssh[-1], "true"]
        variants += [
            ("ssh_true", lambda: timed_run(ssh_true)),
            ("ssh_ready", lambda: first_byte(ssh_ready)),
            ("ssh_fast", lambda: timed_run(ssh_fast)),
        ]
        section.commands += [
            f"{shlex.join(ssh_true)}   # start to exit, fresh handshake",
            f"{shlex.join(ssh_ready)}   # start to first byte",
            f"{shlex.join(ssh_fast)}   # start to exit",
        ]
    return variants


def _rows(ms: dict[str, list[float]]) -> list[Row]:
    status = Row("cold jobctl status N", "ms", ms["status"], False)
    status.target, status.met = f"< {_TARGET_STATUS:.0f} ms", status.value < _TARGET_STATUS
    run = Row("cold jobctl run -- echo ready: first byte", "ms", ms["run"], False)
    run.target, run.met = f"< {_TARGET_RUN:.0f} ms", run.value < _TARGET_RUN
    rows = [status, run]
    if "ssh_true" in ms:
        ssh_true = Row("ssh 127.0.0.1 true (fresh handshake)", "ms", ms["ssh_true"], False)
        ssh_ready = Row("ssh 127.0.0.1 echo ready: first byte", "ms", ms["ssh_ready"], False)
        status.reference, status.ref_value = "ssh true", ssh_true.value
        run.reference, run.ref_value = "ssh echo", ssh_ready.value
        ssh_fast = Row(f"ssh 127.0.0.1 true, {_FAST_KEX} kex", "ms", ms["ssh_fast"], False)
        rows += [ssh_true, ssh_ready, ssh_fast]
    rows.append(Row("floor: python -c pass", "ms", ms["python"], False))
    return rows
