"""A follower: one job's output from the output stream, from an offset, in order, to its end.

An ordered consumer (flow-controlled, recreated by nats-py at the next sequence after a gap or
a server failing over) delivers the job's messages from the first; this class puts chunks in
offset order, drops bytes already delivered, trims the chunk that straddles the requested
offset, and ends at the job's end marker.
"""

from __future__ import annotations

import functools
from types import TracebackType

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.api import DeliverPolicy

from jobservice.cluster import layout
from jobservice.cluster.publisher import HEADER_OFFSET, HEADER_STREAM
from jobservice.cluster.retry import retrying
from jobservice.core.model import Chunk, Stream

__all__ = ["Follower"]

_STREAMS = {"1": Stream.STDOUT, "2": Stream.STDERR}
# What nats-py may hold for one follower whose client reads slowly (flow control keeps the
# server from sending much more).
_PENDING_BYTES = 16 << 20


class Follower:
    """An async iterator of `Chunk`s, used as an async context manager."""

    def __init__(self, nc: Client, job_id: int, streams: Stream, offset: int) -> None:
        self._nc = nc
        self._job_id = job_id
        self._streams = streams
        self._next = offset  # the combined-output offset of the next byte to deliver
        self._held: dict[int, Chunk] = {}  # chunks that arrived ahead of a gap, by offset
        self._sub: NatsSubscription | None = None
        self._ended = False

    async def __aenter__(self) -> Follower:
        self._sub = await retrying(
            "following a job's output",
            functools.partial(
                self._nc.jetstream().subscribe,
                layout.output_filter(self._job_id),
                stream=layout.OUTPUT_STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
                idle_heartbeat=2.0,
                pending_bytes_limit=_PENDING_BYTES,
            ),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._ended = True
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> Chunk:
        while True:
            chunk = self._take_held()
            if chunk is not None:
                if chunk.stream & self._streams:
                    return chunk
                continue
            if self._ended or self._sub is None:
                # A gap still open at the end marker cannot be filled (a Lost job's last
                # unacknowledged bytes): what was stored has been delivered.
                raise StopAsyncIteration
            self._accept(await self._sub.next_msg(timeout=None))

    def _accept(self, msg: Msg) -> None:
        if msg.subject.endswith(".e"):
            self._ended = True
            return
        headers = msg.headers or {}
        offset = int(headers[HEADER_OFFSET])
        chunk = Chunk(_STREAMS[headers[HEADER_STREAM]], offset, msg.data)
        if chunk.end > self._next:
            self._held.setdefault(offset, chunk)

    def _take_held(self) -> Chunk | None:
        """The chunk that continues the output at `_next`, trimmed to start there."""
        for offset in sorted(self._held):
            chunk = self._held[offset]
            if offset > self._next:
                return None
            del self._held[offset]
            if chunk.end <= self._next:
                continue
            skip = self._next - offset
            self._next = chunk.end
            return Chunk(chunk.stream, offset + skip, chunk.data[skip:]) if skip else chunk
        return None
