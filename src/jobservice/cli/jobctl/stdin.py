"""`jobctl run -i`: our stdin into the job's, as `ssh` and `kubectl exec -i` forward it.

Without -i the job's stdin is /dev/null, and piped input would vanish without a word; so `run`
says so when its stdin is not a terminal and has something to read.
"""

# ruff: noqa: PLC0415 (grpclib and protobuf only once connected)

from __future__ import annotations

import asyncio
import os
import select
import stat
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["CHUNK", "forward_stdin", "warn_if_dropped"]

# Bytes per message: well under the server's request limit, and the most held in memory.
CHUNK = 64 * 1024


def warn_if_dropped() -> None:
    """A note on stderr when stdin holds input that the job will not see (no -i)."""
    if _has_input(sys.stdin.fileno()):
        click.echo(
            "jobctl: stdin is not passed to the job (its stdin is /dev/null); "
            "use `jobctl run -i` to forward it",
            err=True,
        )


def _has_input(fd: int) -> bool:
    """Whether `fd` is not a terminal and has input now: a non-empty file, or a pipe with data.

    A pipe is only polled, never read: a writer that has not written yet, or has closed it
    empty, is not input.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    if os.isatty(fd):
        return False
    if stat.S_ISREG(mode):
        return os.fstat(fd).st_size > os.lseek(fd, 0, os.SEEK_CUR)
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return False  # /dev/null and other devices
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    # POLLIN alone: data waiting; POLLHUP without POLLIN: closed with nothing written.
    return any(events & select.POLLIN for _, events in poller.poll(0))


async def forward_stdin(stub: JobServiceStub, job_id: int) -> None:
    """Copy our stdin to the job's until end-of-file, which closes the job's stdin too."""
    from jobservice.api.v1 import jobservice_pb2 as pb

    fd = sys.stdin.fileno()
    async with stub.WriteStdin.open() as call:
        await call.send_message(pb.StdinChunk(job_id=job_id))  # names the job at once
        while data := await _read(fd):
            await call.send_message(pb.StdinChunk(data=data))  # waits while the job is full
        await call.end()
        await call.recv_message()


async def _read(fd: int) -> bytes:
    """Up to CHUNK bytes once `fd` is readable (b"" at end-of-file), without blocking the loop.

    A regular file is always readable; for a pipe or terminal the loop waits for it. The
    descriptor stays blocking: it is shared with the shell, which must not find it changed.
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
    return os.read(fd, CHUNK)
