"""A per-user bound on the audit lines of calls that failed (the line itself: `dispatch`).

A caller pays nothing for a refused call (a user in no policy gets PERMISSION_DENIED at once)
while jobd writes a line for it: unbounded, one peer could write 129 KiB/s to the log, drowning
everyone else's lines and the disk. Each user (certificate name) may have `REFUSED_BURST` such
lines at once and `REFUSED_RATE` a second; what is dropped is counted and reported, per user,
in one line `REPORT_EVERY` seconds after the first drop. Successful calls are always written:
they are the work the service exists for, and each is bounded by its own limits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict

from jobservice.api.budget import TokenBucket
from jobservice.logsafe import quote_field

__all__ = ["REFUSED_BURST", "REFUSED_RATE", "REPORT_EVERY", "RefusedLines"]

audit_log = logging.getLogger("jobservice.audit")

REFUSED_BURST = 100
REFUSED_RATE = 10.0  # lines per second, per user
REPORT_EVERY = 2.0  # seconds
# Users whose budgets are remembered (the least recently refused is forgotten past it).
_USERS_KEPT = 4096
_NO_USER = "-"


class RefusedLines:
    """Per-user budgets for the audit lines of failed calls, and the counts of those dropped."""

    def __init__(self) -> None:
        self._budgets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._dropped: Counter[str] = Counter()

    def allow(self, user: str) -> bool:
        """Whether `user`'s next failed call may have its line; counts it if not."""
        budget = self._budgets.pop(user, None) or TokenBucket(REFUSED_BURST, REFUSED_RATE)
        self._budgets[user] = budget  # most recent last
        if len(self._budgets) > _USERS_KEPT:
            self._budgets.popitem(last=False)
        if budget.spend():
            return True
        if not self._dropped[user]:
            asyncio.get_running_loop().call_later(REPORT_EVERY, self._report, user)
        self._dropped[user] += 1
        return False

    def _report(self, user: str) -> None:
        dropped = self._dropped.pop(user, 0)
        if dropped:
            audit_log.warning(
                "audit user=%s dropped=%d (lines of failed calls over %d at once and %g/s)",
                quote_field(user),
                dropped,
                REFUSED_BURST,
                REFUSED_RATE,
            )
