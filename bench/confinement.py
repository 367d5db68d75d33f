"""Confinement's cost: start rate and idle memory of a confining jobd vs one without, same run.

"without" is jobd as it was before confinement: `--confine off`, jobs run as jobd's own user
(a policy naming root for alice). "confined" is the default: a cgroup per job and the job run
as nobody, through the spawner. The spawner's own cost is measured bare too, and the kernel's
cost of a group per job: the same bare spawns, each into a fresh group removed after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time

from bench.harness import Context, Jobd, Row, Section, alternate, machine_cpu, median
from bench.memory import _settled
from bench.startrate import starts
from jobservice.core.confine import Confinement
from jobservice.core.confine.detect import ConfineMode, detect
from jobservice.core.confine.spawner import Spawner, SpawnOrder
from jobservice.core.model import JobLimits

__all__ = ["run"]

_WINDOW = 16
_SPAWNS = 300


def run(ctx: Context) -> Section:
    n = ctx.scale.start_jobs
    section = Section("confinement", f"Confinement: {n} x /bin/true per run, with and without")
    as_root, as_nobody = ctx.ws.policy(run_as="root"), ctx.ws.policy(run_as=None)
    plain = Jobd.start(ctx.ws, "unconfined", "--confine", "off", "--policy", str(as_root))
    confined = Jobd.start(ctx.ws, "confined", "--policy", str(as_nobody))
    try:
        idle = {"plain": _settled(plain), "confined": _settled(confined)}
        cpu: dict[str, list[float]] = {"plain": [], "confined": []}
        whole: dict[str, list[float]] = {"plain": [], "confined": []}

        def measured(name: str, jobd: Jobd) -> float:
            used, busy = jobd.cpu_seconds(), machine_cpu()
            rate: float = jobd.run(starts, n, _WINDOW)
            cpu[name].append((jobd.cpu_seconds() - used) / n * 1000)
            whole[name].append((machine_cpu() - busy) / n * 1000)
            return rate

        rates = alternate(
            [
                ("plain", lambda: measured("plain", plain)),
                ("confined", lambda: measured("confined", confined)),
            ],
            ctx.scale.rounds,
        )
        served = {"plain": _settled(plain), "confined": _settled(confined)}
    finally:
        plain.stop()
        confined.stop()
    groups, _ = detect(ConfineMode.AUTO, f"jobbench-{os.getpid()}")
    machine: dict[str, list[float]] = {"spawner": [], "grouped": []}

    def spawned(name: str, into: Confinement | None) -> float:
        ms, busy = asyncio.run(_spawned_ms(into))
        machine[name].append(busy)
        return ms

    variants = [("popen", _popen_ms), ("spawner", lambda: spawned("spawner", None))]
    if groups.confined:
        variants.append(("grouped", lambda: spawned("grouped", groups)))
    try:
        spawn = alternate(variants, ctx.scale.rounds)
    finally:
        groups.close()
    without = Row(
        f"Start, {_WINDOW} in flight, unconfined as jobd's user", "jobs/s", rates["plain"]
    )
    with_ = Row(f"Start, {_WINDOW} in flight, confined as nobody", "jobs/s", rates["confined"])
    with_.reference, with_.ref_value = "unconfined", without.value
    with_.target, with_.met = ">= 0.90x", with_.value >= 0.9 * without.value
    for row, name in ((with_, "confined"), (without, "plain")):
        row.note = (
            f"CPU per start: jobd {median(cpu[name]):.2f} ms, "
            f"the machine {median(whole[name]):.2f} ms"
        )
    idle_plain = Row("idle RSS, unconfined", "MiB", [idle["plain"]], False)
    idle_conf = Row("idle RSS, confined", "MiB", [idle["confined"]], False)
    idle_conf.reference, idle_conf.ref_value = "unconfined", idle["plain"]
    idle_conf.target, idle_conf.met = "<= 1.10x", idle["confined"] <= 1.1 * idle["plain"]
    idle_conf.note = f"after {n * ctx.scale.rounds} starts: {served['confined']:.1f} MiB"
    idle_plain.note = f"after {n * ctx.scale.rounds} starts: {served['plain']:.1f} MiB"
    bare = Row("spawn /bin/true, Popen", "ms", spawn["popen"], False)
    tramp = Row("spawn /bin/true through the spawner", "ms", spawn["spawner"], False)
    tramp.reference, tramp.ref_value = "Popen", bare.value
    tramp.note = f"+{median(spawn['spawner']) - median(spawn['popen']):.2f} ms"
    section.rows = [with_, without, idle_conf, idle_plain, tramp, bare]
    if "grouped" in spawn:
        label = "spawn /bin/true through the spawner, in a fresh cgroup"
        grouped = Row(label, "ms", spawn["grouped"], False)
        grouped.reference, grouped.ref_value = "no cgroup", tramp.value
        extra = median(machine["grouped"]) - median(machine["spawner"])
        grouped.note = f"+{extra:.2f} ms of machine CPU per job: {groups.description}"
        section.rows.insert(4, grouped)
    section.commands = [
        f"{n} x StartRequest(command='/bin/true'), {_WINDOW} in flight, to `jobd serve "
        "--confine off` (policy: alice run_as root) and to `jobd serve` (confined, nobody)",
        f"{_SPAWNS} x Popen(['/bin/true']).wait() vs the same through the spawner, one at a "
        "time (no cgroup to enter, no account switch: the spawn path alone)",
        "in a fresh cgroup: the same, each /bin/true in a group of its own made as jobd makes "
        "one (mkdir in each hierarchy), read and removed through the spawner once it has exited "
        "(the kernel's own cost of a group per job)",
    ]
    return section


def _popen_ms() -> float:
    begin = time.perf_counter()
    for _ in range(_SPAWNS):
        subprocess.Popen(["/bin/true"]).wait()
    return (time.perf_counter() - begin) / _SPAWNS * 1000


async def _spawned_ms(groups: Confinement | None = None) -> tuple[float, float]:
    """The same /bin/true through the spawner, one at a time, each reaped as Popen's is; with
    `groups`, each in a fresh cgroup of its own, removed after it (the group's whole life).
    Wall and machine CPU milliseconds per spawn."""
    spawner = Spawner()
    out = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    order = SpawnOrder("/bin/true", ["true"], "/", {}, None, (), spawner.devnull, out, out)
    try:
        # Blocking waits on purpose: the loop measures spawns one after another, as Popen().wait().
        os.waitpid(await spawner.spawn(order), 0)  # noqa: ASYNC222 - its own start: not counted
        begin, busy = time.perf_counter(), machine_cpu()
        for job_id in range(_SPAWNS):
            group = groups.create(job_id, JobLimits()) if groups is not None else None
            if group is not None:
                order = dataclasses.replace(order, procs_files=group.procs_files)
            os.waitpid(await spawner.spawn(order), 0)  # noqa: ASYNC222
            if group is not None:
                group.release()
                group.usage_from(await spawner.finish(group.usage_files, group.dirs))
        wall, cpu = time.perf_counter() - begin, machine_cpu() - busy
        return wall / _SPAWNS * 1000, cpu / _SPAWNS * 1000
    finally:
        spawner.close()
        os.close(out)
