"""Client roles the benchmark runs in their own process (so they have their own CPU and buffers).

    python -m bench.clients follow TARGET PKI COUNT          # COUNT followers of the job id
                                                             # read from stdin: JSON
    python -m bench.clients latency TARGET PKI LINES GAP     # a printer job, one follower: JSON
    python -m bench.clients stall TARGET PKI BYTES           # a job, a follower that never reads

Each follower has its own connection (open_channel: the real mTLS client), as separate users'
clients would.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from grpclib.client import Channel

from bench.harness import start_job
from jobservice._upstream.hyperframe import quiet_data_frame_repr
from jobservice.api import JobServiceStub, open_channel
from jobservice.api.v1 import jobservice_pb2 as pb

__all__ = ["PRINTER", "LineClock", "printer_argv"]

T = TypeVar("T")

# A job that prints time.time_ns() on a line every GAP seconds, flushing each line.
PRINTER = """
import sys, time
n, gap = int(sys.argv[1]), float(sys.argv[2])
out = sys.stdout.buffer
due = time.monotonic()
for _ in range(n):
    out.write(b"%d\\n" % time.time_ns())
    out.flush()
    due += gap
    time.sleep(max(0.0, due - time.monotonic()))
"""


def printer_argv(python: str, lines: int, gap: float) -> list[str]:
    return [python, "-c", PRINTER, str(lines), str(gap)]


class LineClock:
    """Delays (ms) from each timestamped line's write to the arrival of the bytes holding it."""

    def __init__(self) -> None:
        self._partial = b""
        self.delays_ms: list[float] = []

    def feed(self, data: bytes, arrived_ns: int) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        self.delays_ms += [(arrived_ns - int(line)) / 1e6 for line in lines if line]


async def _connect(target: str, pki: Path) -> Channel:
    return await open_channel(
        target, ca=pki / "ca.pem", cert=pki / "alice.pem", key=pki / "alice.key"
    )


async def _follow(stub: JobServiceStub, job_id: int, clock: LineClock | None = None) -> int:
    """Read the job's whole output; bytes received."""
    received = 0
    async with stub.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        async for response in stream:
            if response.HasField("chunk"):
                data = response.chunk.data
                if clock is not None:
                    clock.feed(data, time.time_ns())
                received += len(data)
    return received


def _close(channels: Sequence[Channel]) -> None:
    for channel in channels:
        channel.close()


async def follow(target: str, pki: Path, count: int) -> dict[str, Any]:
    """Connect `count` followers, say "ready", read a job id from stdin, follow it with each."""
    channels = [await _connect(target, pki) for _ in range(count)]
    stubs = [JobServiceStub(channel) for channel in channels]
    try:
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        job_id = int(line)
        cpu = _cpu()
        received = await asyncio.gather(*(_follow(stub, job_id) for stub in stubs))
        done = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes
        cpu = _cpu() - cpu
    finally:
        _close(channels)
    return {"bytes": received, "done": done, "cpu": cpu}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def latency(target: str, pki: Path, lines: int, gap: float) -> dict[str, Any]:
    """Start the printer job, follow it, and time each line's trip."""
    channel = await _connect(target, pki)
    stub = JobServiceStub(channel)
    clock = LineClock()
    try:
        job_id = await start_job(stub, printer_argv(sys.executable, lines, gap))
        await _follow(stub, job_id, clock)
    finally:
        channel.close()
    return {"delays_ms": clock.delays_ms}


async def stall(target: str, pki: Path, size: int) -> None:
    """Start a job and open its output without ever reading it; wait to be ended by pid."""
    stub = JobServiceStub(await _connect(target, pki))
    job_id = await start_job(stub, ["head", "-c", str(size), "/dev/zero"])
    async with stub.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        print(json.dumps({"job_id": job_id}), flush=True)
        await asyncio.sleep(3600)  # bounded; the benchmark ends this process long before


def _run_streaming(main: Coroutine[Any, Any, T]) -> T:
    """Run a follower's loop as `jobctl output` runs it: on uvloop (when installed)."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: list[str]) -> None:
    quiet_data_frame_repr()  # as jobctl does: the client is what these figures measure
    role, target, pki = argv[0], argv[1], Path(argv[2])
    if role == "follow":
        result = _run_streaming(follow(target, pki, int(argv[3])))
    elif role == "latency":
        result = _run_streaming(latency(target, pki, int(argv[3]), float(argv[4])))
    else:
        asyncio.run(stall(target, pki, int(argv[3])))
        return
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
