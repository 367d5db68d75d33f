"""Helpers for the library's tests: collecting output, checking processes, Python jobs."""

from __future__ import annotations

import sys

from jobservice.core import Chunk, JobCoordinator, Stream

PYTHON = sys.executable


async def collect(
    coord: JobCoordinator, job_id: int, streams: Stream = Stream.BOTH, offset: int = 0
) -> list[Chunk]:
    return [chunk async for chunk in coord.subscribe(job_id, streams, offset)]


def joined(chunks: list[Chunk], stream: Stream = Stream.BOTH) -> bytes:
    return b"".join(c.data for c in chunks if c.stream & stream)


def gone(pid: int) -> bool:
    """True once `pid` is dead (a zombie counts: whoever adopted it may not reap at once)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in (b"Z", b"X")


def python_job(code: str) -> tuple[str, list[str]]:
    return PYTHON, ["-c", code]


def spinner(threads: int, seconds: float) -> tuple[str, list[str]]:
    """A Python job keeping `threads` threads busy for `seconds` of wall time."""
    return python_job(
        "import threading, time\n"
        "def spin():\n"
        f"    end = time.monotonic() + {seconds}\n"
        "    while time.monotonic() < end: pass\n"
        f"ts = [threading.Thread(target=spin) for _ in range({threads})]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]"
    )
