"""A transport wrapper that joins the small writes of one event-loop iteration into one."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["COALESCE_LIMIT", "CoalescingTransport"]

# Writes are held back only while they total less than this; a larger write (a DATA frame of
# output) goes out at once with whatever is held, so the real transport's buffer, and with it
# pause_writing/resume_writing, sees every byte as before: at most this much more is buffered.
COALESCE_LIMIT = 16 << 10


class CoalescingTransport:
    """Holds small writes until the end of the current loop iteration, then writes them as one.

    grpclib writes to its transport after every HEADERS, DATA and WINDOW_UPDATE frame, and over
    TLS each write is its own record and its own send(): a unary response was three of each.
    Joined, it is one. Everything but writing and closing is the wrapped transport's own.
    """

    def __init__(self, transport: asyncio.Transport, limit: int = COALESCE_LIMIT) -> None:
        self._transport = transport
        self._limit = limit
        self._held: list[bytes] = []
        self._held_size = 0
        self._flush_handle: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._held and len(data) >= self._limit:
            self._transport.write(data)
            return
        self._held.append(bytes(data))
        self._held_size += len(data)
        if self._held_size >= self._limit:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write everything held now, as one write."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held.clear()
            self._held_size = 0
            self._transport.write(data)

    def close(self) -> None:
        self.flush()  # a close sends what was written before it, as the transport's own does
        self._transport.close()

    def abort(self) -> None:
        self._discard()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._held_size + self._transport.get_write_buffer_size()

    def _discard(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._held.clear()
        self._held_size = 0

    def __getattr__(self, name: str) -> Any:
        # get_extra_info, is_closing, pause_reading, ...: the wrapped transport's.
        return getattr(self._transport, name)
