"""ClusterFront: the JobBackend a stateless `jobd serve --nats` serves the API over.

It keeps no state of its own that matters: job records come from watching the jobs bucket
(a local cache, so Status and List answer without a round trip), node liveness from watching
the nodes bucket. Starts go to the work queue, stops to the job's agent, output comes from the
output stream. Any number of fronts serve the same jobs; one that dies loses nothing.
It also marks the running jobs of a node whose heartbeats stopped as Lost (every front checks;
the bucket's compare-and-set lets exactly one of them write it), and applies the retention
rules of a single host to the cluster's finished jobs (`keep_tidy`; the record's removal is a
compare-and-set too, so one front removes each job however many sweep).
"""

from __future__ import annotations

import asyncio
import bisect
import builtins
import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from jobservice.cluster import layout
from jobservice.cluster.errors import NodeNotFound, NodeUnavailable
from jobservice.cluster.follow import Follower
from jobservice.cluster.records import (
    STDIN_EOF,
    STDIN_JOB,
    Heartbeat,
    StartRequest,
    decode_error,
    decode_info,
    encode_info,
)
from jobservice.cluster.retry import TRANSIENT, retrying
from jobservice.core.backend import NodeInfo
from jobservice.core.confine.account import Account
from jobservice.core.errors import (
    InvalidRequest,
    JobNotFound,
    JobNotRunning,
    JobStillRunning,
    StdinClosed,
)
from jobservice.core.model import NO_LIMITS, JobInfo, JobLimits, JobState, Limits, Stream
from jobservice.core.retention import Retention

__all__ = ["ClusterFront"]

log = logging.getLogger("jobservice.cluster.front")

# Bounds of the pause between two retention sweeps (as the single host's janitor): by age at
# least every tenth of --retain and at most hourly; for quotas and per-user counts, at most once
# a second after records change (agents update a running job's record about once a second).
_MIN_SWEEP = 1.0
_MAX_SWEEP = 3600.0
# A stdin chunk waits for the job's pipe to take it as long as the job runs (a job that does not
# read holds its writer, as on a single host); this only bounds a request nobody answers.
_STDIN_PATIENCE = 24 * 3600.0
# JetStream's error code for a compare-and-set whose expected revision is not the key's last.
_WRONG_LAST_SEQUENCE = 10071


@dataclasses.dataclass
class _Node:
    heartbeat: Heartbeat
    seen: float  # time.monotonic() of its last heartbeat here
    seen_wall: float
    revision: int  # of that heartbeat in the bucket


class ClusterFront:
    """Start, stop, report and stream the cluster's jobs (see `core.backend.JobBackend`)."""

    def __init__(
        self,
        nc: Client,
        *,
        replicas: int = 3,
        start_timeout: float = 10.0,
        stop_grace: float = 5.0,
        limits: Limits | None = None,
        retention: Retention | None = None,
    ) -> None:
        self._nc = nc
        self.retention = retention or Retention()
        self._js: JetStreamContext = nc.jetstream()
        self._replicas = replicas
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.limits = limits or Limits()
        self._records: dict[int, JobInfo] = {}
        # Running jobs per owner among the records, and starts in flight through this front
        # whose record has not arrived: together what `--max-jobs-per-user` is checked against.
        self._running: Counter[str] = Counter()
        self._starting: Counter[str] = Counter()
        self._in_flight: dict[int, str] = {}  # of those, the queued ones: job id -> owner
        self._revisions: dict[int, int] = {}
        self._changed = asyncio.Event()  # set and replaced whenever a record changes
        self._followers: defaultdict[int, set[Follower]] = defaultdict(set)
        self._nodes: dict[str, _Node] = {}
        # Node silence is counted from here: the front's start, or the last time the bucket
        # did not answer.
        self._counting_since = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        # This front's key in the nodes bucket, written every heartbeat interval to check that
        # the bucket takes writes (node names cannot start with the prefix).
        self._probe_key = f"{layout.FRONT_PROBE_PREFIX}{nc.new_inbox().rsplit('.', 1)[-1]}"
        # Agents answer every start of this front on one subscription, `PREFIX.N` for the Nth
        # start, rather than on a subscription made and removed per start (two more protocol
        # messages per start, each passed on to every route of the cluster).
        self._reply_prefix = nc.new_inbox()
        self._started = 0
        self._replies: dict[str, asyncio.Future[Msg]] = {}
        self._reply_sub: Subscription | None = None

    async def open(self) -> None:
        """Make sure the layout exists, load every record and node, then keep them current."""
        buckets = await layout.create_layout(self._js, self._replicas)
        self._jobs: KeyValue = buckets.jobs
        self._nodes_kv: KeyValue = buckets.nodes
        self._reply_sub = await self._nc.subscribe(f"{self._reply_prefix}.*", cb=self._on_reply)
        jobs_loaded, nodes_loaded = asyncio.Event(), asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._watch(self._jobs, self._on_record, jobs_loaded)),
            asyncio.create_task(self._watch(self._nodes_kv, self._on_heartbeat, nodes_loaded)),
            asyncio.create_task(self._reap()),
        ]
        await jobs_loaded.wait()
        await nodes_loaded.wait()

    async def close(self) -> None:
        """Stop watching. Jobs keep running on their agents: a front owns none of them."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._reply_sub is not None:
            with contextlib.suppress(Exception):
                await self._reply_sub.unsubscribe()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._nodes_kv.delete(self._probe_key), 2)

    # -- JobBackend

    async def start(
        self,
        owner: str,
        command: str,
        args: Sequence[str] = (),
        dir: str = "",
        env: Sequence[str] = (),
        *,
        limits: JobLimits = NO_LIMITS,
        run_as: Account | None = None,
        node: str = "",
        stdin: bool = False,
    ) -> int:
        """Queue the start for `node` (or any agent); return the id once an agent started it.

        `run_as` travels by name: the agent runs the job as the account of that name on its host.
        LimitExceeded if `owner` has `max_running_jobs_per_owner` jobs running in the cluster,
        counting the starts in flight through this front (docs/cluster.md, "Limits": exact per
        front; across fronts the starts in flight through the others are not yet seen).
        """
        request = StartRequest(
            owner,
            command,
            tuple(args),
            dir,
            tuple(env),
            limits,
            run_as.name if run_as else "",
            stdin,
        )
        size = len(command) + len(dir) + sum(len(s) for s in (*args, *env))
        if size > self.limits.max_request_bytes:
            raise InvalidRequest(
                f"request of {size} bytes is over the {self.limits.max_request_bytes}-byte limit"
            )
        if node:
            layout.validate_node_name(node)
            if node not in self._nodes:
                raise NodeNotFound(node)
        subject = layout.start_subject(node) if node else layout.START_ANY
        self.limits.check_running(owner, self._running[owner] + self._starting[owner])
        self._starting[owner] += 1
        queued: list[int] = []
        try:
            return await self._queue(request, subject, node, queued)
        finally:
            # Counted as starting until its record is here (then among the running, or ended).
            if queued:
                self._arrived(queued[0])
            else:
                self._unstart(owner)

    async def _queue(
        self, request: StartRequest, subject: str, node: str, queued: list[int]
    ) -> int:
        """Queue `request` on `subject`; the job's id once an agent has started it. The id is
        put in `queued` as soon as the queue has given it out."""
        self._started += 1
        inbox = f"{self._reply_prefix}.{self._started}"
        answered = self._replies[inbox] = asyncio.get_running_loop().create_future()
        try:
            # Expires in the queue if no agent takes it in time, so it never starts late.
            # The message id makes a publish retried after a lost ack store one request.
            headers = {"Jobd-Reply": inbox, "Nats-Msg-Id": inbox}
            ack = await retrying(
                "queueing a start",
                functools.partial(
                    self._js.publish,
                    subject,
                    request.encode(),
                    headers=headers,
                    msg_ttl=max(1.0, self.start_timeout),
                ),
            )
            queued.append(ack.seq)
            self._in_flight[ack.seq] = request.owner
            if ack.seq in self._records:  # the watch was quicker than the ack
                self._arrived(ack.seq)
            try:
                reply = await asyncio.wait_for(answered, self.start_timeout + 2)
            except TimeoutError:
                where = f"node {node!r}" if node else "no agent"
                raise NodeUnavailable(
                    f"{where} took the start within {self.start_timeout:g} s "
                    "(agents down or at capacity)"
                ) from None
        finally:
            del self._replies[inbox]
        answer = json.loads(reply.data)
        error = decode_error(answer) if isinstance(answer, dict) else None
        if error is not None:
            raise error
        info = decode_info(reply.data)
        self._learn(info, revision=0)
        return ack.seq

    async def stop(self, job_id: int) -> JobInfo:
        info = self.status(job_id)
        if not info.is_running:
            raise JobNotRunning(job_id)
        payload = json.dumps({"job_id": job_id}).encode()
        try:
            reply = await self._nc.request(
                layout.stop_subject(info.node), payload, timeout=self.stop_grace + 10
            )
        except (NoRespondersError, NatsTimeout):
            raise NodeUnavailable(
                f"node {info.node!r} of job {job_id} does not answer (its jobs become lost "
                f"within {layout.NODE_TTL + layout.HEARTBEAT_INTERVAL:g} s if it is down)"
            ) from None
        error = decode_error(json.loads(reply.data))
        if error is not None:
            raise error
        final = decode_info(reply.data)
        self._learn(final, revision=0)
        return final

    async def start_on(
        self,
        node: str,
        owner: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dir: str = "",
        env: Sequence[str] = (),
        limits: JobLimits = NO_LIMITS,
        run_as: Account | None = None,
        stdin: bool = False,
    ) -> int:
        return await self.start(
            owner, command, args, dir, env, limits=limits, run_as=run_as, node=node, stdin=stdin
        )

    async def write_stdin(self, job_id: int, data: bytes) -> None:
        """Into the job's stdin on its agent: one request per chunk, answered once the job's pipe
        has taken it, so a job that reads slowly holds back the caller (flow control)."""
        await self._stdin_request(job_id, data, eof=False)

    async def close_stdin(self, job_id: int) -> None:
        await self._stdin_request(job_id, b"", eof=True)

    async def _stdin_request(self, job_id: int, data: bytes, *, eof: bool) -> None:
        info = self.status(job_id)
        if not info.is_running:
            raise StdinClosed(job_id)
        headers = {STDIN_JOB: str(job_id)}
        if eof:
            headers[STDIN_EOF] = "1"
        request = asyncio.ensure_future(
            self._nc.request(
                layout.stdin_subject(info.node), data, timeout=_STDIN_PATIENCE, headers=headers
            )
        )
        ended = asyncio.ensure_future(self.wait(job_id))
        try:
            await asyncio.wait({request, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (request, ended):
                task.cancel()
            # Whichever lost: its outcome is not needed (and not left unretrieved).
            await asyncio.gather(request, ended, return_exceptions=True)
        if request.cancelled():
            raise StdinClosed(job_id)  # the job ended (or was declared Lost) first
        try:
            reply = request.result()
        except (NoRespondersError, NatsTimeout):
            raise NodeUnavailable(f"node {info.node!r} of job {job_id} does not answer") from None
        error = decode_error(json.loads(reply.data))
        if error is not None:
            raise error

    async def lookup(self, job_id: int) -> None:
        if job_id in self._records:
            return
        with contextlib.suppress(KeyNotFoundError):
            entry = await retrying(
                "looking a job up", functools.partial(self._jobs.get, str(job_id))
            )
            if entry.value:
                self._learn(decode_info(entry.value), entry.revision or 0)

    def status(self, job_id: int) -> JobInfo:
        info = self._records.get(job_id)
        if info is None:
            raise JobNotFound(job_id)
        return info

    def list(self) -> list[JobInfo]:
        return [self._records[i] for i in sorted(self._records)]

    def jobs_after(self, job_id: int) -> Iterator[JobInfo]:
        ids = sorted(self._records)
        for known_id in ids[bisect.bisect_right(ids, job_id) :]:
            info = self._records.get(known_id)
            if info is not None:
                yield info

    def owner(self, job_id: int) -> str | None:
        info = self._records.get(job_id)
        return info.owner if info is not None else None

    def subscribe(self, job_id: int, streams: Stream = Stream.BOTH, offset: int = 0) -> Follower:
        self.status(job_id)  # JobNotFound at once
        if not streams & Stream.BOTH:
            raise InvalidRequest("select stdout, stderr or both")
        if offset < 0:
            raise InvalidRequest("offset must not be negative")
        follower = Follower(self._nc, job_id, streams, offset)
        # A job removed while followed ends its followers (its output is purged from the stream).
        self._followers[job_id].add(follower)
        follower.on_close(functools.partial(self._unfollow, job_id, follower))
        return follower

    def _unfollow(self, job_id: int, follower: Follower) -> None:
        followers = self._followers.get(job_id)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._followers[job_id]

    async def wait(self, job_id: int) -> JobInfo:
        """The job's record once it is no longer running (its final record has arrived)."""
        while (info := self.status(job_id)).is_running:
            await self._changed.wait()
        return info

    async def remove(self, job_id: int) -> None:
        """Delete a finished job's output, then its record (every front's watch forgets it, and
        the agent that ran it removes its own copy)."""
        info = self.status(job_id)
        if info.is_running:
            raise JobStillRunning(job_id)
        await self._remove(info)

    async def _remove(self, info: JobInfo) -> bool:
        """Purge the job's output, then delete its record by compare-and-set on the revision
        this front saw: True if this front removed it, False if another front (or `jobctl rm`)
        did first. Output first: a front that dies between the two leaves a record that the
        next sweep removes, never output that no record names."""
        job_id = info.id
        revision = self._revisions.get(job_id)  # as this front decided on it
        await retrying(
            "removing a job's output",
            functools.partial(
                self._js.purge_stream, layout.OUTPUT_STREAM, subject=layout.output_filter(job_id)
            ),
        )
        if job_id not in self._records:
            return False  # another front removed it meanwhile (the watch said so)
        try:
            await retrying(
                "removing a job",
                functools.partial(self._jobs.delete, str(job_id), last=revision),
            )
        except APIError as exc:
            if exc.err_code != _WRONG_LAST_SEQUENCE:
                raise
            return False  # changed or removed since this front saw it: the watch will say
        self._forget(job_id)
        return True

    async def keep_tidy(self) -> None:
        """Apply the single host's retention rules to the cluster's finished jobs until
        cancelled: `--retain` (age since the end), `--user-quota` (output bytes per user, the
        oldest finished jobs removed first) and `--max-finished-per-user` (docs/retention.md)."""
        while True:
            try:
                await self.tidy()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cluster failing over: the next sweep tries again
                log.warning("applying retention failed: %s", exc)
            pause = self._pause()
            if self.retention.owner_quota or self.limits.max_finished_jobs_per_owner:
                # Also soon after records change: a job that ended, or output that grew.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), max(pause - _MIN_SWEEP, 0))
                pause = _MIN_SWEEP
            await asyncio.sleep(pause)

    def _pause(self) -> float:
        """Until the next job passes its age, within the sweep bounds."""
        keep_for = self.retention.keep_for
        cap = _MAX_SWEEP if keep_for is None else keep_for / 10
        due = self.retention.next_expiry([i for i in self._records.values() if not i.is_running])
        pause = _MAX_SWEEP if due is None else due - time.time()
        return min(max(pause, _MIN_SWEEP), max(cap, _MIN_SWEEP))

    async def tidy(self) -> builtins.list[int]:
        """One sweep: remove every finished job the rules doom; the ids this front removed."""
        doomed: dict[int, str] = {}
        now = time.time()
        for info in self._records.values():
            if self.retention.expired(info, now):
                doomed[info.id] = "kept for --retain"
        by_owner: defaultdict[str, builtins.list[JobInfo]] = defaultdict(builtins.list)
        for info in self._records.values():
            by_owner[info.owner].append(info)
        for owner, infos in by_owner.items():
            finished = sorted(
                (i for i in infos if not i.is_running), key=lambda i: (i.ended_at or 0.0, i.id)
            )
            limit = self.limits.max_finished_jobs_per_owner
            if limit and len(finished) > limit:
                for info in finished[: len(finished) - limit]:
                    doomed.setdefault(info.id, f"{owner} has over {limit} finished jobs")
            quota = self.retention.owner_quota
            excess = sum(i.output_bytes for i in infos) - quota
            for info in finished:
                if not quota or excess <= 0:
                    break
                doomed.setdefault(info.id, f"{owner} is over the output quota")
                excess -= info.output_bytes
        removed = []
        for job_id, why in sorted(doomed.items()):
            current = self._records.get(job_id)
            if current is not None and await self._remove(current):
                log.info("%s: removed job %d", why, job_id)
                removed.append(job_id)
        return removed

    async def _on_reply(self, msg: Msg) -> None:
        """An agent's answer to one of this front's starts (late or doubled ones are dropped)."""
        answered = self._replies.get(msg.subject)
        if answered is not None and not answered.done():
            answered.set_result(msg)

    # -- nodes

    def nodes(self) -> builtins.list[NodeInfo]:
        """Every node seen, alive or not, by name."""
        now = time.monotonic()
        return [
            NodeInfo(
                name=name,
                alive=now - node.seen < layout.NODE_TTL,
                running_jobs=node.heartbeat.running_jobs,
                last_seen=node.seen_wall,
            )
            for name, node in sorted(self._nodes.items())
        ]

    # -- watching and reaping

    async def _watch(
        self, kv: KeyValue, apply: Callable[[str, bytes, int], None], loaded: asyncio.Event
    ) -> None:
        """Apply every update of `kv`; set `loaded` once the current values are in."""
        while True:
            try:
                watcher = await kv.watchall()
                async for entry in watcher:
                    if entry is None:
                        loaded.set()
                        continue
                    if entry.operation in (KV_DEL, KV_PURGE):
                        apply(entry.key, b"", entry.revision)
                    elif entry.value:
                        apply(entry.key, entry.value, entry.revision)
                    if entry.delta == 0:
                        loaded.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching %s failed (%s); watching again", kv._name, exc)
                await asyncio.sleep(0.5)

    def _on_record(self, key: str, value: bytes, revision: int) -> None:
        if value:
            self._learn(decode_info(value), revision)
        else:
            self._forget(int(key))  # removed (jobctl rm)

    def _forget(self, job_id: int) -> None:
        self._count(self._records.pop(job_id, None), None)
        self._revisions.pop(job_id, None)
        for follower in self._followers.pop(job_id, set()):
            follower.removed()

    def _unstart(self, owner: str) -> None:
        self._starting[owner] -= 1
        if self._starting[owner] <= 0:
            del self._starting[owner]

    def _arrived(self, job_id: int) -> None:
        """Job `job_id`'s record is here, or its start has ended without one: it no longer
        counts as starting (once)."""
        owner = self._in_flight.pop(job_id, None)
        if owner is not None:
            self._unstart(owner)

    def _count(self, old: JobInfo | None, new: JobInfo | None) -> None:
        """Keep `_running` in step with a record replaced by another (None: absent)."""
        if old is not None and old.is_running:
            self._running[old.owner] -= 1
            if self._running[old.owner] <= 0:
                del self._running[old.owner]
        if new is not None and new.is_running:
            self._running[new.owner] += 1

    def _learn(self, info: JobInfo, revision: int) -> None:
        old = self._records.get(info.id)
        self._arrived(info.id)
        # State only moves forward: a late running record never hides an end already known.
        if old is not None and not old.is_running and info.is_running:
            return
        self._count(old, info)
        self._records[info.id] = info
        if revision:
            self._revisions[info.id] = revision
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _on_heartbeat(self, key: str, value: bytes, revision: int) -> None:
        if key.startswith(layout.FRONT_PROBE_PREFIX):
            return  # a front's own probe, not a node
        if not value:
            return  # an agent that stopped deleted its key: it shows down after NODE_TTL
        known = self._nodes.get(key)
        if known is None or revision > known.revision:
            self._nodes[key] = _Node(
                Heartbeat.decode(value), time.monotonic(), time.time(), revision
            )

    async def _reap(self) -> None:
        """Every heartbeat interval: mark the running jobs of silent nodes Lost."""
        while True:
            await asyncio.sleep(layout.HEARTBEAT_INTERVAL)
            now = time.monotonic()
            if not await self._bucket_answers():
                # Silence counts only while the bucket works: a server failing over (its leader
                # being elected again) silences every node at once, and kills no job.
                self._counting_since = now
                for heard in self._nodes.values():
                    heard.seen = now
                continue
            silent: set[str] = set()
            for info in [i for i in self._records.values() if i.is_running]:
                if info.node not in silent and not await self._is_silent(info.node, now):
                    continue
                silent.add(info.node)
                try:
                    await self._mark_lost(info)
                except Exception as exc:
                    log.warning("marking job %d lost failed: %s", info.id, exc)

    async def _is_silent(self, name: str, now: float) -> bool:
        """No heartbeat of node `name` for NODE_TTL, as the watch says and the bucket confirms
        (a watch can lag behind while its server fails over; the bucket's key cannot)."""
        node = self._nodes.get(name)
        seen = node.seen if node is not None else self._counting_since
        if now - max(seen, self._counting_since) < layout.NODE_TTL:
            return False
        try:
            entry = await asyncio.wait_for(self._nodes_kv.get(name), layout.HEARTBEAT_INTERVAL)
        except KeyNotFoundError:
            return True
        except (TimeoutError, *TRANSIENT):  # type: ignore[misc]
            return False  # cannot tell now: ask again next time
        if entry.value and (node is None or (entry.revision or 0) > node.revision):
            self._on_heartbeat(name, entry.value, entry.revision or 0)  # the watch was behind
            return False
        return True

    async def _bucket_answers(self) -> bool:
        """Whether this front can write to the nodes bucket itself, now: if it cannot, neither
        can agents, and their silence says nothing about them."""
        try:
            await asyncio.wait_for(
                self._nodes_kv.put(self._probe_key, b""), layout.HEARTBEAT_INTERVAL
            )
        except (TimeoutError, *TRANSIENT):  # type: ignore[misc]
            return False
        return True

    async def _mark_lost(self, info: JobInfo) -> None:
        revision = self._revisions.get(info.id)
        if revision is None:
            return  # its record has not come through the watch yet
        lost = dataclasses.replace(
            info,
            state=JobState.LOST,
            ended_at=time.time(),
            lost_reason=f"node {info.node} stopped sending heartbeats while the job ran",
        )
        try:
            await self._jobs.update(str(info.id), encode_info(lost), revision)
        except KeyWrongLastSequenceError:
            return  # another front did it, or the agent wrote an end after all
        log.warning("node %s is silent: job %d lost", info.node, info.id)
        # Followers end at this marker; the output stored before it is all there will be.
        await self._js.publish(
            layout.end_subject(info.id),
            encode_info(lost),
            headers={"Nats-Msg-Id": f"{info.id}:end"},
        )
