"""The spawner (core/confine/spawnd.py): confined jobs are jobd's own children, started clean.

Each test compares with what the plain path (Popen in jobd) gives, or kills the real spawner
process: no part of it is replaced.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from corehelp import collect, joined

from jobservice.core import JobCoordinator, SpawnFailed
from jobservice.core.confine import Account, Confinement, spawnd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the spawner runs jobs as others")

# What a job (the shell) learns of itself: its parent, session, open fds (which its commands
# inherit) and signal dispositions (idem, those it ignores).
SELF = (
    "echo ppid=$PPID; "
    "grep -E '^(SigIgn|SigBlk):' /proc/self/status; "
    "echo sid=$(cut -d' ' -f6 /proc/self/stat) pid=$$; "
    "ls /proc/self/fd"
)


async def _self_report(coord: JobCoordinator, **kwargs: object) -> list[str]:
    job = await coord.start("a", "sh", ["-c", SELF], dir="/", **kwargs)  # type: ignore[arg-type]
    return joined(await collect(coord, job)).decode().splitlines()


async def test_a_confined_job_is_started_like_one_jobd_forks_itself(
    confined: JobCoordinator, coord: JobCoordinator
) -> None:
    spawned = await _self_report(confined, run_as=Account.lookup("nobody"))
    forked = await _self_report(coord)
    assert confined.spawner.pid is not None  # it went through the spawner
    # Our child, not the spawner's: jobd watches and reaps it as any other.
    assert spawned[0] == f"ppid={os.getpid()}"
    assert spawned[1:3] == forked[1:3]  # the same ignored and blocked signals
    sid, pid = (field.split("=")[1] for field in spawned[3].split())
    assert sid == pid  # the leader of its own session
    # 0-2, and the one ls opens to list them: nothing of the spawner's leaks in.
    assert spawned[4:] == forked[4:]
    assert len(spawned[4:]) == 4


async def test_a_large_request_arrives_whole(confined: JobCoordinator) -> None:
    big = "x" * 100_000  # twice: more than one message holds, so it travels in a memfd
    script = 'printf %s "$BIG$1" | wc -c'
    job = await confined.start("a", "sh", ["-c", script, "-", big], env=[f"BIG={big}"])
    assert joined(await collect(confined, job)) == b"200000\n"


async def test_a_dead_spawner_is_replaced(confined: JobCoordinator) -> None:
    job = await confined.start("a", "true")
    await confined.wait(job)
    first = confined.spawner.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # our own child, by its pid
    # The next start may be the one that finds it gone (SpawnFailed); then a new one takes over.
    refusal = ""
    try:
        job = await confined.start("a", "echo", ["again"])
    except SpawnFailed as exc:
        refusal = str(exc)
        job = await confined.start("a", "echo", ["again"])
    assert refusal in ("", "the spawner exited") or "cannot reach the spawner" in refusal
    assert joined(await collect(confined, job)) == b"again\n"
    assert confined.spawner.pid not in (None, first)


async def test_a_cancelled_start_leaves_no_process_and_no_cgroup(
    confined: JobCoordinator, confinement: Confinement, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    starting = asyncio.ensure_future(
        confined.start("a", "sh", ["-c", f"touch {marker}; exec sleep 1000"])
    )
    while confined.spawner.in_flight == 0:  # the request is with the spawner
        await asyncio.sleep(0)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    # The job was started all the same, then killed, reaped and its group removed.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while confinement.job_ids() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert confinement.job_ids() == []
    assert confined.list() == []


async def test_many_large_starts_at_once_all_arrive(confined: JobCoordinator) -> None:
    # 100 requests of ~50 KB each, at once: more than the socket's buffer holds, and more
    # than may be in flight: they wait their turn instead of failing.
    value = "y" * 50_000
    jobs = await asyncio.gather(
        *(confined.start("a", "sh", ["-c", "echo ${#V}"], env=[f"V={value}"]) for _ in range(100))
    )
    outputs = await asyncio.gather(*(collect(confined, job) for job in jobs))
    assert {joined(output) for output in outputs} == {b"50000\n"}


@pytest.mark.parametrize("clone3", [True, False], ids=["clone3", "clone"])
def test_the_clone_makes_the_child_its_callers_parents(clone3: bool) -> None:
    """CLONE_PARENT by clone3, and by clone(2) where clone3 is filtered (systemd's
    RestrictNamespaces answers it ENOSYS): the child is the spawner's parent's, here ours."""
    script = (
        f"import sys; sys.path.insert(0, {str(Path(spawnd.__file__).parent)!r}); import os; "
        f"import spawnd; pid = spawnd.Cloner(clone3={clone3}).clone(); "
        "pid or os.execv('/bin/sh', ['sh', '-c', 'exit 7']); print(pid)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True
    )
    _, status = os.waitpid(int(out.stdout), 0)  # ChildProcessError if it were not ours
    assert os.waitstatus_to_exitcode(status) == 7


async def test_an_answer_nobody_waits_for_any_more_is_dropped_quietly(
    confined: JobCoordinator,
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    await confined.wait(await confined.start("a", "true"))  # the spawner runs
    waiting = asyncio.ensure_future(confined.spawner.finish([], []))
    while confined.spawner.in_flight == 0:  # asked; the answer is on its way
        await asyncio.sleep(0)
    waiting.cancel()
    job = await confined.start("a", "echo", ["after"])
    assert joined(await collect(confined, job)) == b"after\n"
    assert errors == []  # no InvalidStateError from answering a cancelled request
