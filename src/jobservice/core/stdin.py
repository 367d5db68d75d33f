"""A job's stdin as a pipe the caller writes into, with backpressure: memory stays bounded.

A job started with `stdin=True` reads from this pipe instead of /dev/null. `write` returns once
the kernel has taken every byte, so a caller that awaits each write holds at most one chunk; a
job that does not read simply makes the writer wait. `close` is end-of-file for the job.
"""

from __future__ import annotations

import asyncio
import os

from jobservice.core.errors import StdinClosed

__all__ = ["StdinPipe"]


class StdinPipe:
    """The write end of a job's stdin pipe (non-blocking), owned here and closed here."""

    def __init__(self, job_id: int, fd: int) -> None:
        self._job_id = job_id
        self._fd: int | None = fd
        self._waiter: asyncio.Future[None] | None = None
        os.set_blocking(fd, False)

    @property
    def closed(self) -> bool:
        return self._fd is None

    async def write(self, data: bytes) -> None:
        """Write every byte of `data`; StdinClosed if the pipe or the job's end of it is closed."""
        view = memoryview(data)
        while view:
            if self._fd is None:
                raise StdinClosed(self._job_id)
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._writable()
            except BrokenPipeError:  # the job closed its stdin, or exited
                self.close()
                raise StdinClosed(self._job_id) from None

    async def _writable(self) -> None:
        assert self._fd is not None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        loop.add_writer(self._fd, self._wake)
        try:
            await self._waiter
        finally:
            self._waiter = None
            if self._fd is not None:
                loop.remove_writer(self._fd)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        """End-of-file for the job; a write waiting for room is woken and fails."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self._waiter is not None and not self._waiter.done():
            asyncio.get_running_loop().remove_writer(fd)
            self._waiter.set_exception(StdinClosed(self._job_id))
        os.close(fd)
