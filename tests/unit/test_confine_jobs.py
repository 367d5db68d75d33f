"""Confined jobs for real: nothing a job starts outlives stop or its end, however it detached."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from corehelp import collect, gone, joined

from jobservice.core import JobCoordinator, JobLimits, JobState
from jobservice.core.confine import Account, Confinement

# Prints the pids of a setsid grandchild and of a double-forked one (its own group, parent
# gone), then ends or waits as told.
ESCAPERS = (
    "setsid sleep 777 & echo $!; "
    "sh -c 'sleep 778 & echo $!' ; "  # the middle shell exits: a double fork
    "{tail}"
)


async def _pids_printed(coord: JobCoordinator, job_id: int, count: int) -> list[int]:
    """The first `count` lines the job printed, as pids (read live from its output)."""
    text = b""
    async with coord.subscribe(job_id) as output:
        async for chunk in output:
            text += chunk.data
            if text.count(b"\n") >= count:
                break
    return [int(line) for line in text.split()[:count]]


async def test_escaped_processes_die_when_the_job_is_stopped(
    confined: JobCoordinator, confinement: Confinement
) -> None:
    job = await confined.start("a", "sh", ["-c", ESCAPERS.format(tail="exec sleep 1000")])
    pids = await _pids_printed(confined, job, 2)
    group = confinement.find(job)
    assert group is not None
    assert set(pids) <= set(group.pids())
    info = await confined.stop(job)
    assert info.exit is not None
    assert info.exit.signal == signal.SIGTERM
    assert all(gone(pid) for pid in pids)
    assert confinement.find(job) is None  # the group is removed once empty


async def test_escaped_processes_die_when_the_job_ends(
    confined: JobCoordinator, confinement: Confinement
) -> None:
    job = await confined.start("a", "sh", ["-c", ESCAPERS.format(tail="exit 0")])
    info = await confined.wait(job)
    pids = [int(line) for line in joined(await collect(confined, job)).split()]
    assert len(pids) == 2
    assert info.exit is not None
    assert info.exit.code == 0
    assert all(gone(pid) for pid in pids)
    assert confinement.find(job) is None


async def test_a_job_ignoring_sigterm_in_every_process_is_killed_after_the_grace(
    confined: JobCoordinator,
) -> None:
    script = "trap '' TERM; setsid sh -c \"trap '' TERM; sleep 1000\" & echo $!; sleep 1000"
    job = await confined.start("a", "sh", ["-c", script])
    [child] = await _pids_printed(confined, job, 1)
    info = await confined.stop(job)
    assert info.exit is not None
    assert info.exit.signal == signal.SIGKILL
    assert gone(child)


async def test_the_job_runs_in_its_group_from_its_first_instruction(
    confined: JobCoordinator, confinement: Confinement
) -> None:
    job = await confined.start("a", "cat", ["/proc/self/cgroup"])
    lines = joined(await collect(confined, job)).decode().splitlines()
    v2 = next(line for line in lines if line.startswith("0::"))
    assert v2.endswith(f"/job-{job}")
    status = await confined.wait(job)
    assert status.confined
    assert status.usage is not None


async def test_environment_directory_and_argv0_are_the_jobs_own(
    confined: JobCoordinator, tmp_path: Path
) -> None:
    # The spawner must not change what the job sees: not its environment (names a shell
    # would drop included), not its directory, not its argv[0].
    job = await confined.start("a", "env", env=["A-B=1", "X=y=z", "EMPTY="])
    assert joined(await collect(confined, job)) == b"A-B=1\nX=y=z\nEMPTY=\n"
    job = await confined.start("a", "cat", ["/proc/self/cmdline"])
    assert joined(await collect(confined, job)) == b"cat\0/proc/self/cmdline\0"
    job = await confined.start("a", "pwd", dir=str(tmp_path))
    assert joined(await collect(confined, job)) == f"{tmp_path}\n".encode()


async def test_run_as_another_account_with_only_its_own_group(confined: JobCoordinator) -> None:
    nobody = Account.lookup("nobody")
    job = await confined.start(
        "a", "grep", ["-E", "^(Uid|Gid|Groups)", "/proc/self/status"], run_as=nobody
    )
    lines = joined(await collect(confined, job)).decode().splitlines()
    uid, gid = str(nobody.uid), str(nobody.gid)
    assert lines[0].split()[1:] == [uid] * 4  # real, effective, saved and file system
    assert lines[1].split()[1:] == [gid] * 4
    assert lines[2].split()[1:] == [gid]  # root's supplementary groups are gone
    assert confined.status(job).run_as == "nobody"


async def test_no_group_is_left_after_many_jobs(
    confined: JobCoordinator, confinement: Confinement
) -> None:
    jobs = [await confined.start("a", "sh", ["-c", "sleep 0.01 & exit 0"]) for _ in range(50)]
    await asyncio.gather(*(confined.wait(j) for j in jobs))
    assert all(confined.status(j).state is JobState.EXITED for j in jobs)
    assert confinement.job_ids() == []


async def test_a_group_left_by_a_dead_server_is_found_and_killed_by_job_id(
    confinement: Confinement,
) -> None:
    # What crash recovery (issue 12) uses: the group is named after the job id.
    group = confinement.create(4242, JobLimits())
    assert group is not None
    pid = os.posix_spawn("/bin/sleep", ["sleep", "1000"], {})
    try:
        for path in group.procs_files:
            path.write_text(str(pid))
        assert confinement.job_ids() == [4242]
        assert confinement.kill_job(4242)
        os.waitpid(pid, 0)
        assert confinement.find(4242) is None
        assert confinement.job_ids() == []
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
