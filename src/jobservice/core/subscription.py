"""A subscriber's view of one job's output: every byte from an offset, then live, then the end."""

from __future__ import annotations

from collections import deque
from types import TracebackType

from jobservice.core.model import Chunk, Stream
from jobservice.core.output_log import LogReader, OutputLog

__all__ = ["Subscription"]


class Subscription:
    """An async iterator of `Chunk`s; it ends once the job has exited and its output is drained.

    It reads the log file with its own file descriptor and never holds more than one read's worth
    of chunks, so a subscriber that stops reading costs a few hundred KiB and slows nobody. It
    sleeps on the log's notification when it has caught up: no polling.
    """

    def __init__(self, log: OutputLog, streams: Stream = Stream.BOTH, offset: int = 0) -> None:
        self._log = log
        self._reader = LogReader(log.path, streams, offset)
        self._pending: deque[Chunk] = deque()
        self._done = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Chunk:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            size, closed = self._log.size, self._log.closed  # read before the file, not after
            self._pending.extend(self._reader.read(size))
            if self._pending or self._reader.pos < size:
                continue
            if closed:
                await self.aclose()
                raise StopAsyncIteration
            await self._log.wait_beyond(size)
        return self._pending.popleft()

    async def aclose(self) -> None:
        """Stop following and release the file descriptor; safe to call more than once."""
        self._done = True
        self._pending.clear()
        self._reader.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
