"""Output faults: a follower that never reads, the output quota, a full disk, stray children."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import time
from pathlib import Path

import pytest
from grpclib.const import Status
from hostilehelp import launch, rss_kib, wait_until
from jobdhelp import Connect, Jobd, JobdLauncher, following, read_output, status_of

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb

MIB = 1 << 20


async def start(stub: JobServiceStub, script: str) -> int:
    return (await stub.Start(pb.StartRequest(command="sh", args=["-c", script]))).job_id


async def one_run(
    server: Jobd, alice: JobServiceStub, stalled_stub: JobServiceStub | None, size: int, go: Path
) -> tuple[float, float, int]:
    """A job writing `size` bytes with one live follower (and a stalled one if given).

    Returns how long the job took to write its output (measured by the job), how long the live
    follower took to receive it, and jobd's peak RSS growth in KiB over the run.
    """
    go.unlink(missing_ok=True)
    script = (
        f"while [ ! -e {go} ]; do sleep 0.01; done; s=$(date +%s.%N); "
        f"head -c {size} /dev/zero; echo $s $(date +%s.%N) >&2"
    )
    job_id = await start(alice, script)
    stalled = None
    if stalled_stub is not None:  # opens its stream, is sent its first bytes, never reads
        stalled = stalled_stub.Output.open()
        await stalled.__aenter__()
        await stalled.send_message(pb.OutputRequest(job_id=job_id), end=True)
        await stalled.recv_initial_metadata()
    baseline, peak = rss_kib(server.pid), 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_kib(server.pid) - baseline)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    follower = await following(alice, job_id)  # live before the job writes its first byte
    began = time.monotonic()
    go.touch()
    output = await asyncio.wait_for(follower, 120)
    followed = time.monotonic() - began
    sampler.cancel()
    assert len(output.data(pb.STREAM_STDOUT)) == size
    wrote_from, wrote_to = map(float, output.data(pb.STREAM_STDERR).split())
    if stalled is not None:
        await stalled.cancel()
        await stalled.__aexit__(None, None, None)
    return wrote_to - wrote_from, followed, peak


@pytest.mark.parametrize(
    ("size", "timed"),
    [
        pytest.param(256 * MIB, False, id="256MiB"),
        pytest.param(1024 * MIB, True, id="1GiB", marks=pytest.mark.soak),
    ],
)
async def test_a_follower_that_never_reads_slows_nobody_and_costs_no_memory(
    jobd_launcher: JobdLauncher, connect: Connect, tmp_path: Path, size: int, timed: bool
) -> None:
    """Everything arrives and jobd's memory stays flat; `timed` (soak) also compares speeds."""
    server = jobd_launcher.start()
    alice, stalled = await connect(server, "alice"), await connect(server, "alice")
    go = tmp_path / "go"
    job_alone, follower_alone, _ = await one_run(server, alice, None, size, go)
    job_stalled, follower_stalled, peak = await one_run(server, alice, stalled, size, go)
    print(
        f"\n{size // MIB} MiB: job {job_alone:.2f} s alone, {job_stalled:.2f} s beside a "
        f"stalled follower; live follower {follower_alone:.2f} s / {follower_stalled:.2f} s; "
        f"jobd peak RSS +{peak // 1024} MiB"
    )
    if timed:  # wall-clock ratios: the soak tier's, never the default suite's
        assert job_stalled < 1.5 * job_alone + 1.0, "the job was slowed by the stalled follower"
        assert follower_stalled < 1.5 * follower_alone + 1.0, "the live follower was slowed"
    assert peak < 64 * 1024, f"jobd grew by {peak} KiB while {size} bytes went through it"


async def test_the_output_quota_keeps_the_start_and_lets_the_job_run_on(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-output-bytes", str(MIB))
    alice = await connect(server, "alice")
    job_id = await start(alice, "head -c 50000000 /dev/urandom; echo after-the-quota")
    output = await asyncio.wait_for(read_output(alice, job_id), 30)
    assert output.final is not None
    assert output.final.exit_code == 0, "the job ran to its end: output is drained, not blocked"
    assert output.final.output_truncated
    assert output.final.output_bytes == MIB == len(output.data())
    await server.logged(rf"{job_id}\.log: output limit of {MIB} bytes reached; further output")
    next_job = await start(alice, "echo fine")  # and the server serves on
    assert (await read_output(alice, next_job)).data() == b"fine\n"


def file_size_limited(limit: int) -> tuple[str, ...]:
    """Run jobd as if its disk held `limit` bytes per file (RLIMIT_FSIZE, raised again later)."""
    return ("prlimit", f"--fsize={limit}:unlimited", "--")


async def test_a_full_disk_mid_job_truncates_that_output_and_jobd_lives(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = launch(jobd_launcher, wrapper=file_size_limited(MIB), log_via_pipe=True)
    alice = await connect(server, "alice")
    job_id = await start(alice, "head -c 5000000 /dev/zero")
    output = await asyncio.wait_for(read_output(alice, job_id), 30)
    assert output.final is not None
    assert output.final.exit_code == 0
    assert output.final.output_truncated
    assert 0 < len(output.data()) < MIB
    # A write cut short by the limit reads as ENOSPC; one wholly past it fails with EFBIG.
    await server.logged(
        rf"{job_id}\.log: cannot write output: (No space left on device|File too large)"
    )
    assert server.process.poll() is None, "jobd survived (a write past the limit is EFBIG)"
    next_job = await start(alice, "echo fine")
    assert (await read_output(alice, next_job)).data() == b"fine\n"


async def test_a_full_disk_at_start_is_unavailable_and_heals(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = launch(jobd_launcher, log_via_pipe=True)
    # The disk fills up once jobd runs (from the start, jobd would refuse: it cannot open its
    # job records).
    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
    alice = await connect(server, "alice")
    for _ in range(2):
        status, text = await status_of(alice.Start(pb.StartRequest(command="echo", args=["x"])))
        assert status is Status.UNAVAILABLE
        assert text == "cannot create the job's output log: File too large"
    await server.logged(r"answered UNAVAILABLE: cannot create the job's output log")
    # The disk has room again: starts work, and the failed ones used up no id and left no file.
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, unlimited)
    job_id = await start(alice, "echo healed")
    assert job_id == 0
    assert (await read_output(alice, job_id)).data() == b"healed\n"


async def test_a_background_child_holding_the_pipe_does_not_hold_the_stream(
    jobd: Jobd, connect: Connect
) -> None:
    alice = await connect(jobd, "alice")
    job_id = await start(alice, "sleep 30 & echo $!; echo main done")
    output = await asyncio.wait_for(read_output(alice, job_id), 20)  # not the child's 30 s
    assert output.final is not None
    assert output.final.exit_code == 0
    child, done = output.data().split(b"\n")[:2]
    assert done == b"main done"
    assert await wait_until(lambda: not os.path.exists(f"/proc/{int(child)}"), 5)


async def test_a_child_that_escaped_the_job_cannot_hold_the_stream_open(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    # Unconfined (no cgroup to kill it by): confined, the child dies with the job instead
    # (tests/unit/test_confine_jobs.py).
    jobd = jobd_launcher.start("--confine=off", "--stop-grace", "2")
    alice = await connect(jobd, "alice")
    escape = 'setsid sh -c "echo \\$\\$; exec sleep 30" & sleep 0.3; echo main done'
    job_id = await start(alice, escape)
    escaped = None
    try:
        output = await asyncio.wait_for(read_output(alice, job_id), 20)  # not the child's 30 s
        escaped = int(output.data().split(b"\n")[0])
        assert output.final is not None
        assert output.final.exit_code == 0
        await jobd.logged(rf"job {job_id}: .*still open .*after the job ended; closing")
    finally:
        if escaped is not None:  # our job's descendant: gone from the job, so ours to end
            with contextlib.suppress(ProcessLookupError):
                os.kill(escaped, signal.SIGKILL)
