"""HTTP/2 bookkeeping for jobd's connections: open-stream counts and a budget of client resets."""

from __future__ import annotations

import time
from collections.abc import Callable

from grpclib.protocol import EventsProcessor
from grpclib.protocol import Stream as H2Stream
from h2.events import StreamReset

__all__ = ["RESET_BURST", "RESET_RATE", "ResetBudget", "WatchedProcessor"]

# Streams a client may reset while the server still works on them: a burst, then a steady rate.
# A client cancelling its own calls resets a few; thousands a second is an attack.
RESET_BURST = 200
RESET_RATE = 50.0  # per second


class WatchedProcessor(EventsProcessor):
    """grpclib's HTTP/2 event processor, reporting open-stream counts and client resets."""

    def __init__(
        self,
        *args: object,
        on_change: Callable[[int], None],
        on_reset: Callable[[], None],
    ) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._on_change = on_change
        self._on_reset = on_reset

    def register(self, stream: H2Stream) -> Callable[[], None]:
        release = super().register(stream)
        self._on_change(len(self.streams))

        def release_and_count() -> None:
            release()
            self._on_change(len(self.streams))

        return release_and_count

    def process_stream_reset(self, event: StreamReset) -> None:
        if event.remote_reset and event.stream_id in self.streams:
            self._on_reset()  # a stream the server was still working on
        super().process_stream_reset(event)


class ResetBudget:
    """A token bucket of client stream resets: `RESET_BURST` at once, `RESET_RATE` per second."""

    def __init__(self) -> None:
        self._tokens = float(RESET_BURST)
        self._at = time.monotonic()

    def spend(self) -> bool:
        """Take one reset; False once the client is over its budget."""
        now = time.monotonic()
        self._tokens = min(RESET_BURST, self._tokens + (now - self._at) * RESET_RATE)
        self._at = now
        self._tokens -= 1
        return self._tokens >= 0
