"""Publish one job's output into the output stream: pipelined, in order, nothing lost or doubled.

Up to `WINDOW` chunks are in flight at once (one ack per round trip would cap a job at about
40 MB/s). Each message carries `Nats-Msg-Id: ID:OFFSET`, so a chunk published again after a
failed or missing ack (a server failing over) is stored once; followers also put chunks in
offset order, so a retry that lands after a later chunk changes nothing they deliver.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.api import PubAck

from jobservice.cluster import layout
from jobservice.core.model import Chunk, Stream

__all__ = ["HEADER_OFFSET", "HEADER_RESENT", "HEADER_STREAM", "WINDOW", "OutputPublisher"]

log = logging.getLogger("jobservice.cluster.agent")

HEADER_STREAM = "Jobd-Stream"
HEADER_OFFSET = "Jobd-Offset"
# On a chunk published again after its ack did not come: if this copy is the one stored, it may
# be stored after chunks that follow it (followers resuming at an offset look for it).
HEADER_RESENT = "Jobd-Resent"
WINDOW = 32
# A chunk whose publish keeps failing is retried this long (a cluster electing a new leader
# takes a few seconds) before the job's output is given up as undeliverable.
_RETRY_FOR = 60.0
_STREAM_CODES = {Stream.STDOUT: "1", Stream.STDERR: "2"}


class OutputPublisher:
    """Sends a job's chunks in order with several acks outstanding."""

    def __init__(self, js: JetStreamContext, job_id: int) -> None:
        self._js = js
        self._job_id = job_id
        self._subject = layout.output_subject(job_id)
        self._in_flight: deque[tuple[Chunk, asyncio.Future[PubAck]]] = deque()

    async def send(self, chunk: Chunk) -> None:
        """Queue `chunk` (split to the stream's chunk size); waits while the window is full."""
        for start in range(0, len(chunk.data), layout.MAX_CHUNK):
            piece = Chunk(
                chunk.stream, chunk.offset + start, chunk.data[start : start + layout.MAX_CHUNK]
            )
            while len(self._in_flight) >= WINDOW:
                await self._settle_oldest()
            self._in_flight.append((piece, await self._publish_async(piece)))

    async def flush(self) -> None:
        """Return once every chunk sent so far is stored."""
        while self._in_flight:
            await self._settle_oldest()

    async def end(self, record: bytes) -> None:
        """Write the end marker (the job's final record) after every chunk."""
        await self.flush()
        headers = {"Nats-Msg-Id": f"{self._job_id}:end"}
        await self._retry(
            functools.partial(
                self._js.publish, layout.end_subject(self._job_id), record, headers=headers
            )
        )

    async def _publish_again(self, chunk: Chunk) -> PubAck:
        headers = {**self._headers(chunk), HEADER_RESENT: "1"}
        return await self._js.publish(self._subject, chunk.data, headers=headers)

    async def _publish_async(self, chunk: Chunk) -> asyncio.Future[PubAck]:
        return await self._js.publish_async(self._subject, chunk.data, headers=self._headers(chunk))

    def _headers(self, chunk: Chunk) -> dict[str, str]:
        return {
            HEADER_STREAM: _STREAM_CODES[chunk.stream],
            HEADER_OFFSET: str(chunk.offset),
            "Nats-Msg-Id": f"{self._job_id}:{chunk.offset}",
        }

    async def _settle_oldest(self) -> None:
        chunk, ack = self._in_flight[0]
        try:
            await asyncio.wait_for(ack, timeout=5)
        except Exception as exc:
            log.warning(
                "job %d: chunk at %d not acknowledged (%s); resending",
                self._job_id,
                chunk.offset,
                exc,
            )
            # Everything after it is resent too, in order; duplicates are dropped by id.
            pending = [c for c, f in self._in_flight]
            for _, f in self._in_flight:
                f.cancel()
            self._in_flight.clear()
            for c in pending:
                await self._retry(functools.partial(self._publish_again, c))
            return
        self._in_flight.popleft()

    async def _retry(self, publish: Callable[[], Awaitable[PubAck]]) -> None:
        deadline = asyncio.get_running_loop().time() + _RETRY_FOR
        delay = 0.1
        while True:
            try:
                await publish()
                return
            except Exception as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("job %d: publish failed (%s); retrying", self._job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
