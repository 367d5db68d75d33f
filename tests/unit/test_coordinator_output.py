"""Output: every byte, in order, from the start, to any number of subscribers, in flat memory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import struct
import subprocess
from pathlib import Path

import psutil
import pytest
from corehelp import PYTHON, collect, joined, python_job

from jobservice.core import (
    Chunk,
    InvalidRequest,
    JobCoordinator,
    JobNotFound,
    JobState,
    Limits,
    Stream,
)
from jobservice.core.output_log import MAGIC

RANDOM_JOB = (
    "import random, sys; r = random.Random({seed}); out = sys.stdout.buffer\n"
    "for _ in range({blocks}): out.write(r.randbytes({size}))\n"
)


def expected_random(seed: int, blocks: int, size: int) -> bytes:
    r = random.Random(seed)
    return b"".join(r.randbytes(size) for _ in range(blocks))


async def test_binary_output_is_recorded_byte_for_byte(coord: JobCoordinator) -> None:
    cmd, args = python_job(RANDOM_JOB.format(seed=7, blocks=40, size=100_003))
    job = await coord.start("a", cmd, args)
    data = joined(await collect(coord, job))
    want = expected_random(7, 40, 100_003)
    assert b"\0" in want
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(want).hexdigest()
    assert coord.status(job).output_bytes == len(want)


async def test_streams_are_kept_apart_and_selectable(coord: JobCoordinator) -> None:
    code = "import sys\nfor i in range(100): print(f'o{i}'); print(f'e{i}', file=sys.stderr)"
    job = await coord.start("a", *python_job(code))
    both = await collect(coord, job)
    want_out = "".join(f"o{i}\n" for i in range(100)).encode()
    want_err = "".join(f"e{i}\n" for i in range(100)).encode()
    assert joined(both, Stream.STDOUT) == want_out
    assert joined(both, Stream.STDERR) == want_err
    assert joined(await collect(coord, job, Stream.STDOUT)) == want_out
    assert joined(await collect(coord, job, Stream.STDERR)) == want_err
    assert {c.stream for c in await collect(coord, job, Stream.STDERR)} == {Stream.STDERR}


async def test_interleaving_of_stdout_and_stderr_is_kept(coord: JobCoordinator) -> None:
    # Writes separated in time reach the log in the order the job made them.
    code = (
        "import sys, time\n"
        "for i in range(6):\n"
        "    s = (sys.stdout, sys.stderr)[i % 2]; s.write(f'{i}\\n'); s.flush(); time.sleep(0.03)"
    )
    job = await coord.start("a", *python_job(code))
    chunks = await collect(coord, job)
    assert [c.data for c in chunks] == [f"{i}\n".encode() for i in range(6)]
    assert [c.stream for c in chunks] == [Stream.STDOUT, Stream.STDERR] * 3


async def test_offsets_count_the_combined_output(coord: JobCoordinator) -> None:
    code = "import sys\nfor i in range(300): (sys.stdout, sys.stderr)[i % 3 == 0].write('x' * i)"
    job = await coord.start("a", *python_job(code))
    chunks = await collect(coord, job)
    position = 0
    for chunk in chunks:
        assert chunk.offset == position
        position = chunk.end
    assert position == coord.status(job).output_bytes == sum(range(300))


async def test_resume_from_any_offset(coord: JobCoordinator) -> None:
    code = (
        "import sys, time\n"
        "for i in range(50):\n"
        "    s = (sys.stdout, sys.stderr)[i % 2]\n"
        "    s.write(str(i) * 1000); s.flush(); time.sleep(0.002)"
    )
    job = await coord.start("a", *python_job(code))
    full = await collect(coord, job)
    everything = joined(full)
    for offset in (0, 1, 999, 1000, 1001, 25_555, len(everything) - 1, len(everything)):
        resumed = await collect(coord, job, offset=offset)
        assert joined(resumed) == everything[offset:]
        if resumed:
            assert resumed[0].offset == offset
    # Resuming one stream skips the other's bytes but keeps combined offsets.
    stdout_from = await collect(coord, job, Stream.STDOUT, offset=10_500)
    assert all(c.stream is Stream.STDOUT and c.offset >= 10_500 for c in stdout_from)
    assert joined(stdout_from) == b"".join(
        c.data[max(0, 10_500 - c.offset) :]
        for c in full
        if c.stream is Stream.STDOUT and c.end > 10_500
    )


async def test_subscribe_errors(coord: JobCoordinator) -> None:
    with pytest.raises(JobNotFound):
        coord.subscribe(3)
    job = await coord.start("a", "true")
    with pytest.raises(InvalidRequest):
        coord.subscribe(job, Stream(0))
    with pytest.raises(InvalidRequest):
        coord.subscribe(job, offset=-1)


async def test_live_output_arrives_while_the_job_runs(
    coord: JobCoordinator, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    code = (
        "import os, sys, time\n"
        "print('first', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\n"
        "print('second')"
    )
    job = await coord.start("a", *python_job(code))
    async with coord.subscribe(job) as sub:
        first = await asyncio.wait_for(anext(sub), 10)
        assert first.data == b"first\n"
        assert coord.status(job).is_running
        gate.touch()
        rest = [c async for c in sub]
    assert joined(rest) == b"second\n"
    assert coord.status(job).state is JobState.EXITED


async def test_a_subscription_ends_only_after_the_job_has_exited(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sh", ["-c", "exec >&-; exec 2>&-; sleep 0.3"])
    chunks = await collect(coord, job)  # pipes close at once; the job lives on
    assert chunks == []
    assert coord.status(job).state is JobState.EXITED


async def test_late_subscriber_gets_everything_from_the_first_byte(coord: JobCoordinator) -> None:
    job = await coord.start("a", *python_job(RANDOM_JOB.format(seed=3, blocks=5, size=70_000)))
    await coord.wait(job)
    assert joined(await collect(coord, job)) == expected_random(3, 5, 70_000)


async def test_many_subscribers_and_one_that_never_reads(coord: JobCoordinator) -> None:
    blocks, size = 64, 1 << 16  # 4 MiB, far more than the pipe and any read buffer hold
    job = await coord.start("a", *python_job(RANDOM_JOB.format(seed=11, blocks=blocks, size=size)))
    stalled = coord.subscribe(job)
    await anext(stalled)  # reads one chunk, then never again

    async def digest() -> str:
        return hashlib.sha256(joined(await collect(coord, job))).hexdigest()

    digests = await asyncio.wait_for(asyncio.gather(*(digest() for _ in range(50))), 60)
    want = hashlib.sha256(expected_random(11, blocks, size)).hexdigest()
    assert set(digests) == {want}
    assert (await asyncio.wait_for(coord.wait(job), 10)).exit is not None  # the job was not held
    await stalled.aclose()


async def test_one_gib_of_output_keeps_memory_flat(coord: JobCoordinator) -> None:
    me = psutil.Process()
    baseline = me.memory_info().rss
    job = await coord.start("a", "head", ["-c", str(1 << 30), "/dev/zero"])
    stalled = coord.subscribe(job)
    await anext(stalled)
    peak = baseline
    total = 0
    async for chunk in coord.subscribe(job, Stream.STDOUT):
        total += len(chunk.data)
        if total % (64 << 20) < len(chunk.data):
            peak = max(peak, me.memory_info().rss)
    await stalled.aclose()
    assert total == 1 << 30
    assert coord.status(job).output_bytes == 1 << 30
    assert peak - baseline < 48 << 20, f"RSS grew by {(peak - baseline) >> 20} MiB"


async def test_output_over_the_limit_keeps_the_start_and_is_marked(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path, limits=Limits(max_output_bytes=10_000))
    job = await coord.start("a", "head", ["-c", "1000000", "/dev/zero"])
    info = await asyncio.wait_for(coord.wait(job), 10)
    assert info.exit is not None
    assert info.exit.code == 0  # the job itself ran to the end: its output was drained
    assert (info.output_bytes, info.output_truncated) == (10_000, True)
    assert joined(await collect(coord, job)) == b"\0" * 10_000


FULL_DISK = """
import asyncio, json, resource, signal, sys
from jobservice.core import JobCoordinator
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
async def main():
    coord = JobCoordinator(sys.argv[1])
    job = await coord.start("a", "sh", ["-c", "echo start; sleep 0.1; head -c 1000000 /dev/zero"])
    info = await coord.wait(job)
    data = b"".join([c.data async for c in coord.subscribe(job)])
    after = await coord.wait(await coord.start("a", "echo", ["still serving"]))
    print(json.dumps([info.exit.code, info.output_truncated, info.output_bytes,
                      data.startswith(b"start\\n") and len(data), after.exit.code]))
asyncio.run(main())
"""


def test_a_failed_write_is_handled_and_logged(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the log's writes fail (EFBIG) as a full disk would, part-way through a
    # record, in a real writer process.
    run = subprocess.run(
        [PYTHON, "-c", FULL_DISK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    code, truncated, recorded, read, after = json.loads(run.stdout)
    assert (code, truncated, after) == (0, True, 0)
    assert recorded == read
    assert 0 < recorded < 100_000
    assert "cannot write output" in run.stderr
    assert os.path.getsize(tmp_path / "logs" / "0.log") == len(MAGIC) + recorded + 5 * (
        _records_in(tmp_path / "logs" / "0.log")
    )


def _records_in(path: Path) -> int:
    data, at, count = path.read_bytes(), len(MAGIC), 0
    while at < len(data):
        at += 5 + struct.unpack_from(">BI", data, at)[1]
        count += 1
    assert at == len(data)  # whole records only: the partial one was cut off
    return count


async def test_log_file_is_private_and_in_the_documented_format(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sh", ["-c", "printf out; sleep 0.05; printf err >&2"])
    await coord.wait(job)
    path = next((Path(coord._logs)).glob(f"{job}.log"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes() == MAGIC + b"\x01\0\0\0\x03out" + b"\x02\0\0\0\x03err"


def test_chunk_end() -> None:
    assert Chunk(Stream.STDOUT, 10, b"abc").end == 13
