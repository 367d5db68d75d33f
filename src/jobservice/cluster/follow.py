"""A follower: one job's output from the output stream, from an offset, in order, to its end.

An ordered consumer (flow-controlled, recreated by nats-py at the next sequence after a gap or
a server failing over) delivers the job's messages; this class puts chunks in offset order,
drops bytes already delivered, trims the chunk that straddles the requested offset, and ends at
the job's end marker.

Resuming at an offset does not replay the job from its first message: `start_sequence` finds
the chunk that holds the offset by a binary search over the job's messages (message GETs by
stream sequence and subject, reading each chunk's `Jobd-Offset` header), and the consumer
starts at that chunk's sequence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, RawStreamMsg
from nats.js.errors import NotFoundError

from jobservice.cluster import layout
from jobservice.cluster.publisher import HEADER_OFFSET, HEADER_RESENT, HEADER_STREAM, WINDOW
from jobservice.cluster.retry import retrying
from jobservice.core.model import Chunk, Stream

__all__ = ["Follower", "start_sequence"]

_STREAMS = {"1": Stream.STDOUT, "2": Stream.STDERR}
# No limit on what nats-py holds for one follower (0 = none): the server's flow control
# bounds it (nats-server's JsFlowControlMaxPending, 32 MiB, unanswered at most). A limit
# below that window dropped messages when the follower's gRPC client read slower than the
# server sent, and nats-py's ordered consumer counts a dropped message as delivered, so the
# bytes were lost without a gap being noticed (a 16 MiB limit truncated a 256 MiB read).
_UNLIMITED = 0
# How soon a follower of a job removed meanwhile (its output purged) notices and ends.
_REMOVED_CHECK = 1.0
# How far (in output bytes) a chunk can be stored out of order: the publisher resends at most
# its window of chunks after a missing ack, and publishes nothing new until they are stored.
_DISORDER = (WINDOW + 1) * layout.MAX_CHUNK


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
        self._removed = False
        self._on_close: list[Callable[[], None]] = []
        # The stream sequence the consumer started at (None: the job's first message).
        self.first_sequence: int | None = None

    async def __aenter__(self) -> Follower:
        js = self._nc.jetstream()
        self.first_sequence = await retrying(
            "finding an offset in a job's output",
            functools.partial(start_sequence, js, self._job_id, self._next),
        )
        config = ConsumerConfig()
        if self.first_sequence is not None:
            config.opt_start_seq = self.first_sequence
        policy = (
            DeliverPolicy.ALL if self.first_sequence is None else DeliverPolicy.BY_START_SEQUENCE
        )
        self._sub = await retrying(
            "following a job's output",
            functools.partial(
                js.subscribe,
                layout.output_filter(self._job_id),
                stream=layout.OUTPUT_STREAM,
                config=config,
                ordered_consumer=True,
                deliver_policy=policy,
                idle_heartbeat=2.0,
                pending_bytes_limit=_UNLIMITED,
                pending_msgs_limit=_UNLIMITED,
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

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the follower is closed."""
        self._on_close.append(callback)

    def removed(self) -> None:
        """The job has been removed: end after what has arrived (no end marker will come)."""
        self._removed = True

    async def aclose(self) -> None:
        self._ended = True
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()
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
            if self._ended or self._removed or self._sub is None:
                # A gap still open at the end marker cannot be filled (a Lost job's last
                # unacknowledged bytes): what was stored has been delivered.
                raise StopAsyncIteration
            try:
                self._accept(await self._sub.next_msg(timeout=_REMOVED_CHECK))
            except NatsTimeout:
                continue  # nothing yet: still there?

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


async def start_sequence(js: JetStreamContext, job_id: int, offset: int) -> int | None:
    """The stream sequence to follow job `job_id` from so that every byte at `offset` or later
    is delivered; None: from its first message (offset 0, or nothing stored before it).

    A binary search over the stream sequences between the job's first and last chunk: each probe
    GETs the job's first chunk at or after a sequence and reads its offset, so a resume costs a
    few dozen small requests whatever the job's size. Chunks are stored in offset order except
    after a resend (a server failing over), which the publisher marks: if the chunk found is
    such a one, later chunks may precede it, and the search is made again for an offset far
    enough back that no chunk past the requested offset can be stored before it.
    """
    if offset <= 0:
        return None
    found = await _last_chunk_at_or_before(js, job_id, offset)
    if found is None:
        return None
    if (found.headers or {}).get(HEADER_RESENT):
        found = await _last_chunk_at_or_before(js, job_id, offset - _DISORDER)
        if found is None:
            return None
    return found.seq


async def _last_chunk_at_or_before(
    js: JetStreamContext, job_id: int, offset: int
) -> RawStreamMsg | None:
    """A stored chunk of the job whose offset is at most `offset`: the last one if the chunks
    are stored in offset order, an earlier one otherwise; None if there is none."""
    if offset <= 0:
        return None
    subject = layout.output_subject(job_id)
    try:
        last = await js.get_last_msg(layout.OUTPUT_STREAM, subject)
    except NotFoundError:
        return None  # nothing stored yet
    if _offset(last) <= offset:
        return last
    best = await _next_chunk(js, subject, 1)
    if best is None or _offset(best) > offset:
        return None
    high = (last.seq or 0) - 1  # the answer's sequence is at most this
    while (best.seq or 0) < high:
        middle = ((best.seq or 0) + 1 + high) // 2
        probe = await _next_chunk(js, subject, middle)
        if probe is None or (probe.seq or 0) > high or _offset(probe) > offset:
            high = middle - 1  # no chunk at or before `offset` from `middle` on
        else:
            best = probe
    return best


async def _next_chunk(js: JetStreamContext, subject: str, seq: int) -> RawStreamMsg | None:
    """The first message on `subject` at stream sequence `seq` or later."""
    try:
        return await js.get_msg(layout.OUTPUT_STREAM, seq=seq, subject=subject, next=True)
    except NotFoundError:
        return None


def _offset(msg: RawStreamMsg) -> int:
    return int((msg.headers or {})[HEADER_OFFSET])
