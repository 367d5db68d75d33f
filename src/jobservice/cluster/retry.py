"""Riding out a NATS server failing over: retry what the cluster could not answer for a while.

While a stream or bucket elects a new leader (a few seconds after a server dies), requests find
no responder or time out. Each operation retried here is safe to repeat: publishes carry a
`Nats-Msg-Id` the stream deduplicates, and record updates are compare-and-set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import ConnectionClosedError, ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError

from jobservice.cluster.errors import NodeUnavailable

__all__ = ["TRANSIENT", "retrying"]

log = logging.getLogger("jobservice.cluster")

T = TypeVar("T")

# What a cluster electing a leader, or a client reconnecting, answers for a moment.
TRANSIENT: tuple[type[Exception], ...] = (
    NoRespondersError,
    NoStreamResponseError,
    NatsTimeout,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    ConnectionClosedError,
)
# Longer than a leader election (a few seconds), shorter than a client's patience.
DEFAULT_PATIENCE = 15.0


async def retrying(
    what: str, operation: Callable[[], Awaitable[T]], patience: float = DEFAULT_PATIENCE
) -> T:
    """`await operation()`, again after transient failures for up to `patience` seconds; then
    NodeUnavailable (UNAVAILABLE to a caller: the cluster has lost its quorum)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    delay = 0.1
    while True:
        try:
            return await operation()
        except TRANSIENT as exc:
            if loop.time() + delay > deadline:
                raise NodeUnavailable(f"the cluster did not answer ({what}): {exc!r}") from exc
            log.info("%s: %r; retrying", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
