"""Writes to a `JobStore` off the event loop: one writer thread, concurrent changes in one commit.

A commit with fsync costs about as much for one record as for a hundred, so while one batch is
being written the next one collects everything that arrives meanwhile (group commit): under
load, the cost per job falls instead of the start rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Sequence

from jobservice.core.store import Change, JobStore

__all__ = ["Journal"]

log = logging.getLogger("jobservice.core")

# Changes per commit at most: bounds one transaction's size and the latency of its first change.
_MAX_BATCH = 512

_Item = tuple[Change, asyncio.Future[None], asyncio.AbstractEventLoop]


class Journal:
    """The coordinator's way to a store: `await write(change)` returns once it is durable."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def write(self, change: Change) -> None:
        """Queue `change` and wait for its commit; raises what the store raised."""
        await asyncio.shield(self.submit(change))  # a cancelled caller does not undo a change

    def submit(self, change: Change) -> asyncio.Future[None]:
        """Queue `change`; the future is done once it is committed (or the commit failed)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._ensure_thread()
        self._queue.put((change, done, loop))
        return done

    def write_now(self, changes: Sequence[Change]) -> None:
        """Apply `changes` in the caller's thread (start-up, before any writer runs)."""
        with self._lock:
            self.store.write(changes)

    async def close(self) -> None:
        """Commit what is queued, stop the thread, close the store."""
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self.store.close()

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jobstore-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Item]) -> None:
        error: BaseException | None = None
        try:
            with self._lock:
                self.store.write([change for change, _, _ in batch])
        except Exception as exc:  # the callers decide; the thread goes on with the next batch
            log.error("job store write failed: %s", exc)
            error = exc
        # One wake-up of each waiting loop per batch, not one per change.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, done, loop in batch:
            by_loop.setdefault(loop, []).append(done)
        for loop, futures in by_loop.items():
            # RuntimeError: that loop is closed, so nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for done in futures:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
