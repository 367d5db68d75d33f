"""A budget of client stream resets per connection (the counting hook: `_upstream.grpclib_h2`)."""

from __future__ import annotations

import time

__all__ = ["RESET_BURST", "RESET_RATE", "ResetBudget"]

# Streams a client may reset while the server still works on them: a burst, then a steady rate.
# A client cancelling its own calls resets a few; thousands a second is an attack.
RESET_BURST = 200
RESET_RATE = 50.0  # per second


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
