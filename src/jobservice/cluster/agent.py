"""An agent: runs the cluster's jobs on its host through a JobCoordinator.

It takes start requests from the work queue when it has capacity, records each job in the jobs
bucket, publishes its output (pipelined: several chunks in flight, acks awaited in order), obeys
stop requests on its own subject, and heartbeats into the nodes bucket. When a job's record
leaves the bucket (`jobctl rm`, or a front applying retention), it removes its own copy of the
job (the host's record and output log) too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KV_DEL, KV_PURGE

from jobservice.cluster import layout
from jobservice.cluster.errors import NodeUnavailable
from jobservice.cluster.publisher import OutputPublisher
from jobservice.cluster.records import (
    STDIN_EOF,
    STDIN_JOB,
    Heartbeat,
    StartRequest,
    decode_info,
    encode_error,
    encode_info,
)
from jobservice.cluster.retry import retrying
from jobservice.core.confine.account import Account
from jobservice.core.coordinator import JobCoordinator
from jobservice.core.defaults import defaults_for
from jobservice.core.errors import InvalidRequest, JobError, JobNotFound, JobStillRunning
from jobservice.core.model import JobInfo, JobState

__all__ = ["Agent"]

log = logging.getLogger("jobservice.cluster.agent")

# Seconds between record updates of a running job (its output_bytes); the end is written at once.
_RECORD_INTERVAL = 1.0
# Start requests fetched at once, when that much capacity is free.
_FETCH_BATCH = 16
# At shutdown, how long each step may take before the next is begun anyway.
_SHUTDOWN_STEP = 5.0
# How long a fetch waits on an empty queue before asking again.
_FETCH_WAIT = 2.0


class Agent:
    """One host's agent; `run()` serves until `stop()`, then stops its jobs as jobd does."""

    def __init__(
        self,
        nc: Client,
        coordinator: JobCoordinator,
        name: str,
        *,
        default_account: Account | None = None,
    ) -> None:
        self.name = layout.validate_node_name(name)
        # A start that names no account (its front resolved none) runs as this one, never as
        # the agent's own (root) account; None only where the agent itself is not root.
        self._default_account = default_account
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream()
        self._coord = coordinator
        # Cluster id -> the coordinator's own id, for every job run here (as the coordinator
        # keeps them); `_active` are those whose output is still being published.
        self._local: dict[int, int] = {}
        self._active: set[int] = set()
        self._revisions: dict[int, int] = {}  # cluster id -> last record revision written
        self._tasks: set[asyncio.Future[object]] = set()
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()

    @property
    def running(self) -> int:
        return len(self._active)

    async def run(self) -> None:
        """Serve until `stop()` is called."""
        buckets = await self._open_layout()
        if buckets is None:
            await self._coord.close()
            return
        self._jobs, self._nodes = buckets.jobs, buckets.nodes
        await self._recover()
        await self._heartbeat_once()
        stops = await self._nc.subscribe(layout.stop_subject(self.name), cb=self._on_stop)
        stdin = await self._nc.subscribe(layout.stdin_subject(self.name), cb=self._on_stdin)
        loops = [
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(self._watch_removals()),
            asyncio.create_task(
                self._take(layout.start_subject(self.name), layout.node_consumer(self.name))
            ),
            asyncio.create_task(self._take(layout.START_ANY, layout.ANY_CONSUMER)),
        ]
        self._ready.set()
        log.info("agent %s ready", self.name)
        try:
            await self._stopping.wait()
        finally:
            for task in loops:
                task.cancel()
            # Bounded: a fetch in flight may take a moment to see its cancellation.
            await asyncio.wait(loops, timeout=_SHUTDOWN_STEP)
            await self._coord.close()  # stops running jobs; their publishers then finish
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=_SHUTDOWN_STEP)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(stops.unsubscribe(), _SHUTDOWN_STEP)
                await asyncio.wait_for(stdin.unsubscribe(), _SHUTDOWN_STEP)
                await asyncio.wait_for(self._nodes.delete(self.name), _SHUTDOWN_STEP)
            log.debug("agent %s stopped", self.name)

    async def _open_layout(self) -> layout.Buckets | None:
        """The cluster's streams and buckets once a front has created them; None if `stop()`
        came first."""
        opening = asyncio.ensure_future(layout.open_layout(self._js))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not opening.done():
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
            return None
        return opening.result()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def stop(self) -> None:
        self._stopping.set()

    async def _recover(self) -> None:
        """Jobs this node ran before it restarted died with it: they are Lost (the durability
        rule for jobs running at a crash). Ours are found in the bucket by their node.

        It also pairs the jobs the host's coordinator kept with their records (by start time,
        owner and command: the record was made from the host's), so that a record removed
        later removes the host's copy; a host's job with no record left in the bucket (removed
        while the agent was down, or never recorded) is removed now."""
        mine = {(info.started_at, info.owner, info.command): info.id for info in self._coord.list()}
        watcher = await self._jobs.watchall(ignore_deletes=True)
        try:
            while (entry := await watcher.updates(timeout=10)) is not None:  # type: ignore[no-untyped-call]
                if entry.value is None:
                    continue
                info = decode_info(entry.value)
                if info.node != self.name:
                    continue
                local = mine.pop((info.started_at, info.owner, info.command), None)
                if local is not None:
                    self._local[info.id] = local
                if info.is_running:
                    lost = dataclasses.replace(
                        info,
                        state=JobState.LOST,
                        ended_at=time.time(),
                        lost_reason=f"the agent on node {self.name} stopped while the job ran",
                    )
                    with contextlib.suppress(KeyWrongLastSequenceError):
                        await self._jobs.update(str(info.id), encode_info(lost), entry.revision)
                        await self._js.publish(layout.end_subject(info.id), encode_info(lost))
                        log.warning("job %d was running when this agent stopped: lost", info.id)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        for local in mine.values():
            with contextlib.suppress(JobNotFound, JobStillRunning):
                await self._coord.remove(local)
                log.info("removed this host's job %d: the cluster has no record of it", local)

    async def _watch_removals(self) -> None:
        """Remove the host's copy of each of our jobs whose record leaves the bucket."""
        while True:
            try:
                watcher = await self._jobs.watchall(meta_only=True)
                async for entry in watcher:
                    if entry is not None and entry.operation in (KV_DEL, KV_PURGE):
                        with contextlib.suppress(ValueError):
                            self._removed(int(entry.key))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching for removed jobs failed (%s); watching again", exc)
                await asyncio.sleep(0.5)

    def _removed(self, job_id: int) -> None:
        local = self._local.pop(job_id, None)
        if local is not None:
            self._spawn(self._remove_local(job_id, local))

    async def _remove_local(self, job_id: int, local: int) -> None:
        """Remove the host's record and log of a job the cluster removed (once it has ended:
        a job declared Lost may still be stopping here)."""
        with contextlib.suppress(JobNotFound):
            await self._coord.wait(local)
            await self._coord.remove(local)
            log.info("job %d was removed from the cluster: removed this host's copy", job_id)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(layout.HEARTBEAT_INTERVAL)
            try:
                await self._heartbeat_once()
            except Exception as exc:  # a server failing over: the next beat retries
                log.warning("heartbeat failed: %s", exc)

    async def _heartbeat_once(self) -> None:
        await self._nodes.put(self.name, Heartbeat(self.name, self.running).encode())

    def _capacity(self) -> int:
        total = self._coord.limits.max_running_jobs
        return _FETCH_BATCH if not total else min(_FETCH_BATCH, total - self.running)

    async def _take(self, subject: str, consumer: str) -> None:
        """Fetch start requests from one work-queue subject while there is capacity.

        The any-consumer exists (a front made it); this node's own is made here the first time.
        """
        sub = await self._js.pull_subscribe(
            subject,
            durable=consumer,
            stream=layout.START_STREAM,
            config=layout.start_consumer(consumer, subject),
        )
        while True:
            room = self._capacity()
            if room <= 0:
                await asyncio.sleep(0.05)  # full: leave requests to agents with room
                continue
            try:
                msgs = await sub.fetch(room, timeout=_FETCH_WAIT)
            except NatsTimeout:
                continue
            except Exception as exc:
                log.warning("fetching start requests failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            results = await asyncio.gather(*(self._start(m) for m in msgs), return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("taking a start request failed: %r", result)

    async def _start(self, msg: Msg) -> None:
        job_id = msg.metadata.sequence.stream
        reply = (msg.headers or {}).get("Jobd-Reply", "")
        try:
            request = StartRequest.decode(msg.data)
        except (ValueError, KeyError, TypeError):
            log.error("start request %d is malformed; dropped", job_id)
            await msg.term()
            return
        await msg.ack()  # taken: once acked no other agent can run it
        try:
            account = _account(request.run_as) or self._default_account
            # What the request leaves unset comes from the account on this host (its home, a
            # PATH), as on a single host.
            defaults = defaults_for(account)
            local = await self._coord.start(
                request.owner,
                request.command,
                request.args,
                request.dir or defaults.dir,
                request.env,
                limits=request.limits,
                run_as=account,
                env_defaults=defaults.env,
                stdin=request.stdin,
            )
        except JobError as exc:
            await self._reply(reply, encode_error(exc, job_id))
            return
        self._local[job_id] = local
        self._active.add(job_id)
        info = self._info(job_id)
        try:
            self._revisions[job_id] = await retrying(
                "recording a job",
                functools.partial(self._jobs.put, str(job_id), encode_info(info)),
            )
        except NodeUnavailable as exc:
            # Unrecorded, nobody could see or stop it: it must not run.
            await self._coord.stop(local)
            self._active.discard(job_id)
            await self._reply(reply, encode_error(exc, job_id))
            return
        await self._reply(reply, encode_info(info))
        self._spawn(self._follow(job_id, local))

    def _info(self, job_id: int) -> JobInfo:
        local = self._coord.status(self._local[job_id])
        return dataclasses.replace(local, id=job_id, node=self.name)

    async def _reply(self, subject: str, data: bytes) -> None:
        if subject:
            await self._nc.publish(subject, data)

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, job_id: int, local: int) -> None:
        """Publish the job's output, keep its record current, and write its end."""
        publisher = OutputPublisher(self._js, job_id)
        recorder = asyncio.create_task(self._record_while_running(job_id))
        try:
            async with self._coord.subscribe(local) as output:
                async for chunk in output:
                    await publisher.send(chunk)
            await publisher.flush()
            final = dataclasses.replace(await self._coord.wait(local), id=job_id, node=self.name)
            await publisher.end(encode_info(final))
            await self._write_record(final)
        except Exception:
            log.exception("job %d: publishing its output failed", job_id)
        finally:
            recorder.cancel()
            self._active.discard(job_id)
            self._revisions.pop(job_id, None)

    async def _record_while_running(self, job_id: int) -> None:
        written = -1
        while True:
            await asyncio.sleep(_RECORD_INTERVAL)
            info = self._info(job_id)
            if info.output_bytes != written:
                written = info.output_bytes
                await self._write_record(info)

    async def _write_record(self, info: JobInfo) -> None:
        """Update the job's record unless a front has declared it Lost; then give it up too."""
        key = str(info.id)
        for _ in range(3):
            revision = self._revisions.get(info.id)
            if revision is None:
                return
            try:
                self._revisions[info.id] = await retrying(
                    "writing a job record",
                    functools.partial(self._jobs.update, key, encode_info(info), revision),
                )
                return
            except KeyWrongLastSequenceError:
                # Someone else wrote it: a front declaring it Lost, or our own write whose ack
                # was lost in a failover. Look.
                entry = await retrying(
                    "reading a job record", functools.partial(self._jobs.get, key)
                )
                if decode_info(entry.value or b"").state is JobState.LOST:
                    self._give_up(info)
                    return
                self._revisions[info.id] = entry.revision or 0

    def _give_up(self, info: JobInfo) -> None:
        """The cluster declared the job Lost (our heartbeats stopped reaching it): it is not ours
        any more, so it must not keep running unseen."""
        log.warning("job %d was declared lost; stopping it", info.id)
        self._revisions.pop(info.id, None)
        local = self._local.get(info.id)
        if local is not None and info.is_running:
            self._spawn(self._coord.stop(local))

    async def _on_stop(self, msg: Msg) -> None:
        self._spawn(self._stop(msg))

    async def _stop(self, msg: Msg) -> None:
        job_id = 0
        try:
            job_id = int(json.loads(msg.data)["job_id"])
            local = self._local.get(job_id)
            if local is None:
                raise JobNotFound(job_id)
            info = await self._coord.stop(local)
            reply = encode_info(dataclasses.replace(info, id=job_id, node=self.name))
        except JobError as exc:
            reply = encode_error(exc, job_id)
        except (ValueError, KeyError, TypeError):
            reply = encode_error(JobNotFound(job_id), job_id)
        await msg.respond(reply)

    async def _on_stdin(self, msg: Msg) -> None:
        # A task each: a job whose pipe is full must not hold back the others' stdin. One
        # job's chunks come one at a time (the front waits for each reply), so stay in order.
        self._spawn(self._stdin(msg))

    async def _stdin(self, msg: Msg) -> None:
        job_id = 0
        try:
            headers = msg.headers or {}
            job_id = int(headers[STDIN_JOB])
            local = self._local.get(job_id)
            if local is None:
                raise JobNotFound(job_id)
            if headers.get(STDIN_EOF):
                self._coord.close_stdin(local)
            else:
                await self._coord.write_stdin(local, msg.data)  # waits for room in the pipe
            reply = json.dumps({"job_id": job_id}).encode()
        except JobError as exc:
            reply = encode_error(exc, job_id)
        except (ValueError, KeyError):
            reply = encode_error(JobNotFound(job_id), job_id)
        await msg.respond(reply)


def _account(name: str) -> Account | None:
    """The account called `name` on this host; InvalidRequest if it has none of that name."""
    if not name:
        return None
    try:
        return Account.lookup(name)
    except KeyError:
        raise InvalidRequest(f"no account {name!r} on this node to run the job as") from None
