"""A job's output on disk: an append-only log of records, and readers that follow it.

Format: the file starts with the 8-byte magic `JOBLOG1\\n`; then come records, each a 5-byte
header (one byte for the stream, 1 = stdout and 2 = stderr, and a 4-byte big-endian length) and
that many bytes of output exactly as read from the pipe. Records are appended whole and in the
order the reads happened, so the interleaving of stdout and stderr is kept and any prefix of the
file that ends at `OutputLog.size` is a sequence of complete records a reader can parse unlocked.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

from jobservice.core.model import Chunk, Stream

__all__ = ["MAGIC", "MAX_RECORD", "Admit", "LogReader", "OutputLog", "scan_log"]

MAGIC = b"JOBLOG1\n"
_HEADER = struct.Struct(">BI")
# The largest record the writer makes (one pipe read), and so the most a reader must hold at once.
MAX_RECORD = 256 * 1024

_STREAMS = {Stream.STDOUT.value: Stream.STDOUT, Stream.STDERR.value: Stream.STDERR}

log = logging.getLogger("jobservice.core")

# Asked before each write with the bytes it adds to the file: False if that would pass the
# owner's disk quota (the coordinator frees older jobs first where it can).
Admit = Callable[[int], bool]


class OutputLog:
    """The writer side: appends records, enforces the output quota, wakes waiting readers."""

    def __init__(self, path: Path, max_bytes: int = 0, admit: Admit | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes  # 0: no limit
        self.admit = admit
        self.data_bytes = 0  # output bytes recorded
        self.size = len(MAGIC)  # bytes of complete records in the file
        self.truncated = False
        self.closed = False
        self._changed: asyncio.Future[None] | None = None
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            if os.write(self._fd, MAGIC) != len(MAGIC):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            # Leave nothing behind (a file here would make every later start of this id fail).
            os.close(self._fd)
            path.unlink(missing_ok=True)
            raise

    @classmethod
    def finished(cls, path: Path, size: int, data_bytes: int, truncated: bool) -> OutputLog:
        """The log of a job that ended before this process started: closed, read-only."""
        output = cls.__new__(cls)
        output.path, output.max_bytes, output.data_bytes, output.admit = path, 0, data_bytes, None
        output.size, output.truncated, output.closed = size, truncated, True
        output._changed, output._fd = None, -1
        return output

    def append(self, stream: Stream, data: bytes) -> None:
        """Record `data` from `stream`; past the quota or on a full disk, drop it and say so."""
        if self.truncated or self.closed:
            return
        if self.max_bytes and self.data_bytes + len(data) > self.max_bytes:
            data = data[: self.max_bytes - self.data_bytes]
            self._truncate(f"output limit of {self.max_bytes} bytes reached")
            if not data:
                return
        if self.admit is not None and not self.admit(_HEADER.size + len(data)):
            self._truncate("the owner's output quota is reached")
            return
        try:
            written = os.writev(self._fd, (_HEADER.pack(stream.value, len(data)), data))
        except OSError as e:
            written = -1
            reason = e.strerror or str(e)
        else:
            reason = os.strerror(errno.ENOSPC)
        if written != _HEADER.size + len(data):
            # A short or failed write leaves a partial record: cut it off so readers never see it.
            os.ftruncate(self._fd, self.size)
            os.lseek(self._fd, self.size, os.SEEK_SET)
            self._truncate(f"cannot write output: {reason}")
            return
        self.size += written
        self.data_bytes += len(data)
        self._notify()

    def close(self) -> None:
        """No more output will come: readers finish once they reach the end."""
        if not self.closed:
            self.closed = True
            os.close(self._fd)
            self._notify()

    async def wait_beyond(self, size: int) -> None:
        """Return once the log holds more than `size` bytes or is closed."""
        if self.size > size or self.closed:
            return
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        # Shielded: one cancelled waiter must not cancel the future the others are waiting on.
        await asyncio.shield(self._changed)

    def _truncate(self, reason: str) -> None:
        self.truncated = True
        log.warning("%s: %s; further output is discarded", self.path.name, reason)
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set_result(None)
            self._changed = None


def scan_log(path: Path) -> tuple[int, int]:
    """The size of the complete records in a log, and the output bytes they hold.

    For a log whose writer died (a crash): a record cut short at the end is not counted, so
    readers see exactly the output that was recorded whole. Reads only the record headers.
    """
    with open(path, "rb", buffering=0) as f:
        end = os.fstat(f.fileno()).st_size
        if f.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path.name} is not a job output log")
        pos, data = len(MAGIC), 0
        while pos + _HEADER.size <= end:
            code, length = _HEADER.unpack(os.pread(f.fileno(), _HEADER.size, pos))
            if code not in _STREAMS or pos + _HEADER.size + length > end:
                break
            pos += _HEADER.size + length
            data += length
    return pos, data


class LogReader:
    """The reader side: parses complete records from the file into chunks, from any offset."""

    def __init__(self, path: Path, streams: Stream = Stream.BOTH, offset: int = 0) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._streams = streams
        self.pos = len(MAGIC)  # file position of the next record
        self.data_offset = 0  # combined-output offset of the next record's first byte
        self._skip_to = offset

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self, limit: int, max_bytes: int = MAX_RECORD) -> list[Chunk]:
        """Chunks from the records between the read position and `limit` (a record boundary).

        Adjacent records of the same stream are joined, up to about `max_bytes` per read.
        """
        if self._skip_to > self.data_offset:
            self._skip(limit)
        want = min(limit - self.pos, max(max_bytes, MAX_RECORD) + _HEADER.size)
        if want <= 0:
            return []
        block = os.pread(self._fd, want, self.pos)
        groups: list[tuple[Stream, int, list[memoryview]]] = []
        end = -1
        for stream, offset, data in self._records(block):
            if not stream & self._streams:
                continue
            if groups and groups[-1][0] is stream and end == offset:
                groups[-1][2].append(data)
            else:
                groups.append((stream, offset, [data]))
            end = offset + len(data)
        return [Chunk(stream, offset, b"".join(parts)) for stream, offset, parts in groups]

    def _records(self, block: bytes) -> Iterator[tuple[Stream, int, memoryview]]:
        # Views into `block`, not copies: each chunk's bytes are copied once, by the join.
        view, at = memoryview(block), 0
        while at + _HEADER.size <= len(block):
            code, length = _HEADER.unpack_from(block, at)
            end = at + _HEADER.size + length
            if end > len(block):
                break  # the rest of this record is beyond this block: the next read starts here
            offset = self.data_offset
            data = view[at + _HEADER.size : end]
            self.pos += end - at
            self.data_offset += length
            at = end
            if offset < self._skip_to:  # resuming inside this record
                data = data[self._skip_to - offset :]
                offset = self._skip_to
            yield _STREAMS[code], offset, data

    def _skip(self, limit: int) -> None:
        """Jump over whole records that end at or before the resume offset, reading only headers."""
        while self.pos + _HEADER.size <= limit:
            _, length = _HEADER.unpack(os.pread(self._fd, _HEADER.size, self.pos))
            if self.data_offset + length > self._skip_to:
                return
            self.pos += _HEADER.size + length
            self.data_offset += length
