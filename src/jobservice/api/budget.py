"""A token bucket: how jobd bounds what one peer or one user may make it do per second."""

from __future__ import annotations

import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """`burst` tokens at once, refilled at `rate` per second (and by `earn`)."""

    def __init__(self, burst: int, rate: float) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._tokens = float(burst)
        self._at = time.monotonic()

    def earn(self, tokens: float) -> None:
        self._tokens = min(self._burst, self._tokens + tokens)

    def spend(self, tokens: int = 1) -> bool:
        """Take `tokens`; False once over the budget."""
        now = time.monotonic()
        self.earn((now - self._at) * self._rate)
        self._at = now
        self._tokens -= tokens
        return self._tokens >= 0
