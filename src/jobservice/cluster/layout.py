"""Names and shapes of what the cluster keeps in JetStream (docs/cluster.md justifies them).

- Stream JOBD_START (work queue, file, R3): start requests on `jobd.start.any` (any agent with
  capacity) or `jobd.start.node.NODE` (that agent). A request's stream sequence is its job id:
  given out by the stream's RAFT leader, unique and increasing across the cluster.
- Stream JOBD_OUTPUT (limits, file, R3): every job's output on `jobd.out.ID.d`, one message per
  chunk with its stream and offset in headers, and one end marker on `jobd.out.ID.e`.
- KV bucket jobd_jobs (R3): job records by id, written by agents (and by fronts for Lost).
- KV bucket jobd_nodes (R3): agent heartbeats by node name, with a TTL (and fronts' probes).
- Core subject `jobd.stop.NODE`: stop requests, request/reply to that node's agent.
- Core subject `jobd.stdin.NODE`: a job's stdin, one request per chunk (the reply once the
  job's pipe has taken it: flow control end to end), to that node's agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    NotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from jobservice.cluster.errors import ClusterError
from jobservice.core.errors import InvalidRequest
from jobservice.security.cluster_pki import NODE_NAME

__all__ = [
    "ANY_CONSUMER",
    "FRONT_PROBE_PREFIX",
    "HEARTBEAT_INTERVAL",
    "JOBS_BUCKET",
    "MAX_CHUNK",
    "NODES_BUCKET",
    "NODE_TTL",
    "OUTPUT_STREAM",
    "START_ANY",
    "START_STREAM",
    "Buckets",
    "create_layout",
    "end_subject",
    "front_inbox",
    "node_consumer",
    "node_inbox",
    "open_layout",
    "output_filter",
    "output_subject",
    "start_consumer",
    "start_subject",
    "stdin_subject",
    "stop_subject",
    "validate_node_name",
]

log = logging.getLogger("jobservice.cluster")

START_STREAM = "JOBD_START"
OUTPUT_STREAM = "JOBD_OUTPUT"
JOBS_BUCKET = "jobd_jobs"
NODES_BUCKET = "jobd_nodes"
START_ANY = "jobd.start.any"
# The start queue's durable consumer that every agent pulls the any-subject from.
ANY_CONSUMER = "jobd-any"
# Fronts write `_front.ID` keys in the nodes bucket to check that it takes writes.
FRONT_PROBE_PREFIX = "_front."

# Agents heartbeat every second; a node silent for NODE_TTL is down and its running jobs Lost,
# which a front notices within a second more: well inside the 10 s the contract allows.
HEARTBEAT_INTERVAL = 1.0
NODE_TTL = 5.0
# A heartbeat key no agent refreshes leaves the bucket after this (the node leaves `nodes`).
_NODE_KEY_TTL = 3600.0
# Output chunks are at most this big: well under the servers' max_payload.
MAX_CHUNK = 256 << 10
# Start requests hold up to the library's 1 MiB request limit, JSON-escaped.
_MAX_START_MSG = 8 << 20
# JetStream's error code for "replicas > 1 not supported in non-clustered mode".
_NOT_CLUSTERED = 10074
# How long a new replicated stream may take to elect its leader.
_LEADER_WAIT = 30.0


def validate_node_name(name: str) -> str:
    """`name` if it can be a node name (one NATS subject token and a certificate CN)."""
    if not NODE_NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid node name {name!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def start_subject(node: str) -> str:
    return f"jobd.start.node.{node}"


def stop_subject(node: str) -> str:
    return f"jobd.stop.{node}"


def stdin_subject(node: str) -> str:
    return f"jobd.stdin.{node}"


def output_subject(job_id: int) -> str:
    return f"jobd.out.{job_id}.d"


def end_subject(job_id: int) -> str:
    return f"jobd.out.{job_id}.e"


def output_filter(job_id: int) -> str:
    return f"jobd.out.{job_id}.*"


class Buckets:
    """The two KV buckets, once the layout exists."""

    def __init__(self, jobs: KeyValue, nodes: KeyValue) -> None:
        self.jobs = jobs
        self.nodes = nodes


def start_consumer(name: str, subject: str) -> ConsumerConfig:
    """The durable pull consumer `name` of the start queue, on `subject` only.

    `jobd-any` takes `jobd.start.any` (created with the layout, shared by every agent);
    `jobd-node-NODE` takes `jobd.start.node.NODE` (created by that node's agent, the only one
    allowed to: its permission names both the consumer and the subject).
    """
    return ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        max_ack_pending=1024,
    )


def front_inbox() -> str:
    """Where fronts receive replies; agents may publish here (their answers to starts)."""
    return "_INBOX.front"


def node_inbox(node: str) -> str:
    """Where node `node`'s agent receives replies (its fetches, its API answers): its own
    prefix, so no other node may subscribe to it and no node to a front's."""
    return f"_INBOX.node.{node}"


def node_consumer(node: str) -> str:
    """The start queue's consumer of node `node`'s own subject."""
    return f"jobd-node-{node}"


async def create_layout(js: JetStreamContext, replicas: int) -> Buckets:
    """Create the streams, buckets and shared consumer that do not exist yet (fronts only).

    Fronts own the layout: an agent runs users' code on its host, so it is given no right to
    create (or change, delete, purge) a stream; it waits for a front (`open_layout`).
    `replicas` is tried first (3 on a cluster of three); a single server cannot hold more than
    one replica, so there each is created with one and a warning says so. A cluster that has
    just started answers nothing until it has elected its meta leader: that is waited for.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LEADER_WAIT
    while True:
        try:
            return await _create_layout(js, replicas)
        except (NatsTimeout, NoRespondersError, ServiceUnavailableError) as exc:
            if loop.time() > deadline:
                raise ClusterError(f"JetStream is not available: {exc!r}") from exc
            await asyncio.sleep(0.25)


async def open_layout(js: JetStreamContext) -> Buckets:
    """The layout a front created (agents): waits, without limit, until it exists."""
    waiting = False
    while True:
        try:
            for stream in _STREAMS:
                await _wait_for_leader(js, stream)
            await js.consumer_info(START_STREAM, ANY_CONSUMER)
            return Buckets(await js.key_value(JOBS_BUCKET), await js.key_value(NODES_BUCKET))
        except (NotFoundError, BucketNotFoundError) as exc:
            if not waiting:
                log.warning("waiting for a front to create the cluster's streams (%s)", exc)
                waiting = True
        except (NatsTimeout, NoRespondersError, ServiceUnavailableError) as exc:
            log.debug("JetStream not available yet: %r", exc)
        await asyncio.sleep(0.25)


# Streams no client may delete messages from by the API; the start queue may not be purged
# either (JOBD_OUTPUT may: `jobctl rm` purges one job's subject, by fronts only).
_STREAM_CONFIGS = (
    StreamConfig(
        name=START_STREAM,
        subjects=["jobd.start.>"],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        max_msg_size=_MAX_START_MSG,
        discard=DiscardPolicy.NEW,
        max_msgs=100_000,
        allow_msg_ttl=True,  # a start no agent took in time expires instead of running late
        deny_delete=True,
        deny_purge=True,
    ),
    StreamConfig(
        name=OUTPUT_STREAM,
        subjects=["jobd.out.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_msg_size=MAX_CHUNK + 4096,
        duplicate_window=120.0,  # a retried chunk (same Nats-Msg-Id) is stored once
        deny_delete=True,
    ),
)


def _bucket(bucket: str, ttl: float | None = None) -> StreamConfig:
    """A KV bucket's stream, as nats-py's `create_key_value` makes it but for what a writer
    could abuse: no rollup headers (a `Nats-Rollup: all` put would purge the whole bucket, and
    a node may put keys), no per-message TTLs, no deletes or purges by the API."""
    window = min(120.0, ttl) if ttl else 120.0
    return StreamConfig(
        name=f"KV_{bucket}",
        subjects=[f"$KV.{bucket}.>"],
        storage=StorageType.FILE,
        discard=DiscardPolicy.NEW,
        duplicate_window=window,
        max_age=ttl,
        max_msgs_per_subject=1,  # history 1
        max_consumers=-1,
        max_msgs=-1,
        allow_rollup_hdrs=False,
        deny_delete=True,
        deny_purge=True,
    )


_BUCKETS = (_bucket(JOBS_BUCKET), _bucket(NODES_BUCKET, ttl=_NODE_KEY_TTL))
_STREAMS = tuple(str(c.name) for c in (*_STREAM_CONFIGS, *_BUCKETS))


async def _create_layout(js: JetStreamContext, replicas: int) -> Buckets:
    for config in (*_STREAM_CONFIGS, *_BUCKETS):
        await _ensure_stream(js, dataclasses.replace(config), replicas)
    for stream in _STREAMS:
        await _wait_for_leader(js, stream)
    try:
        await js.consumer_info(START_STREAM, ANY_CONSUMER)
    except NotFoundError:
        # Two fronts creating it at once create the same configuration: no error.
        await js.add_consumer(START_STREAM, start_consumer(ANY_CONSUMER, START_ANY))
    return Buckets(await js.key_value(JOBS_BUCKET), await js.key_value(NODES_BUCKET))


async def _wait_for_leader(js: JetStreamContext, stream: str) -> None:
    """Return once `stream` has a leader: a replicated stream just created elects one first,
    and a publish before that finds no responder. NotFoundError if it does not exist."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LEADER_WAIT
    while True:
        try:
            info = await js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                return
        except NotFoundError:
            raise
        except (APIError, NatsTimeout, NoRespondersError):
            pass
        if loop.time() > deadline:
            raise ClusterError(f"stream {stream} has no leader after {_LEADER_WAIT:g} s")
        await asyncio.sleep(0.1)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, replicas: int) -> None:
    name = str(config.name)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        pass
    else:
        if info.config.allow_rollup_hdrs:
            log.warning(
                "stream %s allows rollup headers (created by an older jobd): a node can purge "
                "it with one message; recreate it (docs/cluster.md, 'Security model')",
                name,
            )
        return
    for count in dict.fromkeys((replicas, 1)):
        config.num_replicas = count
        try:
            await js.add_stream(config)
        except APIError as exc:
            if await _exists(js, name):
                return  # another front created it at the same time
            if count == 1 or exc.err_code != _NOT_CLUSTERED:
                raise
            log.warning("stream %s: %d replicas refused (%s); using 1", name, count, exc)
            continue
        return


async def _exists(js: JetStreamContext, stream: str) -> bool:
    try:
        await js.stream_info(stream)
    except NotFoundError:
        return False
    return True
