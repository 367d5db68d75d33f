"""Names and shapes of what the cluster keeps in JetStream (docs/cluster.md justifies them).

- Stream JOBD_START (work queue, file, R3): start requests on `jobd.start.any` (any agent with
  capacity) or `jobd.start.node.NODE` (that agent). A request's stream sequence is its job id:
  given out by the stream's RAFT leader, unique and increasing across the cluster.
- Stream JOBD_OUTPUT (limits, file, R3): every job's output on `jobd.out.ID.d`, one message per
  chunk with its stream and offset in headers, and one end marker on `jobd.out.ID.e`.
- KV bucket jobd_jobs (R3): job records by id, written by agents (and by fronts for Lost).
- KV bucket jobd_nodes (R3): agent heartbeats by node name, with a TTL (and fronts' probes).
- Core subject `jobd.stop.NODE`: stop requests, request/reply to that node's agent.
"""

from __future__ import annotations

import asyncio
import logging

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError
from nats.js.kv import KeyValue

from jobservice.cluster.errors import ClusterError
from jobservice.core.errors import InvalidRequest
from jobservice.security.cluster_pki import NODE_NAME

__all__ = [
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
    "end_subject",
    "ensure_layout",
    "output_filter",
    "output_subject",
    "start_subject",
    "stop_subject",
    "validate_node_name",
]

log = logging.getLogger("jobservice.cluster")

START_STREAM = "JOBD_START"
OUTPUT_STREAM = "JOBD_OUTPUT"
JOBS_BUCKET = "jobd_jobs"
NODES_BUCKET = "jobd_nodes"
START_ANY = "jobd.start.any"
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


def output_subject(job_id: int) -> str:
    return f"jobd.out.{job_id}.d"


def end_subject(job_id: int) -> str:
    return f"jobd.out.{job_id}.e"


def output_filter(job_id: int) -> str:
    return f"jobd.out.{job_id}.*"


class Buckets:
    """The two KV buckets, once `ensure_layout` has made sure they exist."""

    def __init__(self, jobs: KeyValue, nodes: KeyValue) -> None:
        self.jobs = jobs
        self.nodes = nodes


async def ensure_layout(js: JetStreamContext, replicas: int) -> Buckets:
    """Create the streams and buckets that do not exist yet; every front and agent calls it.

    `replicas` is tried first (3 on a cluster of three); a single server cannot hold more than
    one replica, so there each is created with one and a warning says so. A cluster that has
    just started answers nothing until it has elected its meta leader: that is waited for.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LEADER_WAIT
    while True:
        try:
            return await _ensure_layout(js, replicas)
        except (NatsTimeout, NoRespondersError, ServiceUnavailableError) as exc:
            if loop.time() > deadline:
                raise ClusterError(f"JetStream is not available: {exc!r}") from exc
            await asyncio.sleep(0.25)


async def _ensure_layout(js: JetStreamContext, replicas: int) -> Buckets:
    await _ensure_stream(
        js,
        StreamConfig(
            name=START_STREAM,
            subjects=["jobd.start.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_msg_size=_MAX_START_MSG,
            discard=DiscardPolicy.NEW,
            max_msgs=100_000,
            allow_msg_ttl=True,  # a start no agent took in time expires instead of running late
        ),
        replicas,
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=OUTPUT_STREAM,
            subjects=["jobd.out.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_msg_size=MAX_CHUNK + 4096,
            duplicate_window=120.0,  # a retried chunk (same Nats-Msg-Id) is stored once
        ),
        replicas,
    )
    jobs = await _ensure_bucket(js, KeyValueConfig(bucket=JOBS_BUCKET, history=1), replicas)
    nodes = await _ensure_bucket(
        js, KeyValueConfig(bucket=NODES_BUCKET, history=1, ttl=_NODE_KEY_TTL), replicas
    )
    for stream in (START_STREAM, OUTPUT_STREAM, f"KV_{JOBS_BUCKET}", f"KV_{NODES_BUCKET}"):
        await _wait_for_leader(js, stream)
    return Buckets(jobs, nodes)


async def _wait_for_leader(js: JetStreamContext, stream: str) -> None:
    """Return once `stream` has a leader: a replicated stream just created elects one first,
    and a publish before that finds no responder."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LEADER_WAIT
    while True:
        try:
            info = await js.stream_info(stream)
            if info.cluster is None or info.cluster.leader:
                return
        except (APIError, NatsTimeout, NoRespondersError):
            pass
        if loop.time() > deadline:
            raise ClusterError(f"stream {stream} has no leader after {_LEADER_WAIT:g} s")
        await asyncio.sleep(0.1)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig, replicas: int) -> None:
    try:
        await js.stream_info(str(config.name))
        return
    except NotFoundError:
        pass
    for count in dict.fromkeys((replicas, 1)):
        config.num_replicas = count
        try:
            await js.add_stream(config)
        except APIError as exc:
            if await _exists(js, str(config.name)):
                return  # another front or agent created it at the same time
            if count == 1 or exc.err_code != _NOT_CLUSTERED:
                raise
            log.warning("stream %s: %d replicas refused (%s); using 1", config.name, count, exc)
            continue
        return


async def _ensure_bucket(js: JetStreamContext, config: KeyValueConfig, replicas: int) -> KeyValue:
    try:
        return await js.key_value(config.bucket)
    except (NotFoundError, APIError):
        pass
    for count in dict.fromkeys((replicas, 1)):
        config.replicas = count
        try:
            return await js.create_key_value(config)
        except APIError as exc:
            if await _exists(js, f"KV_{config.bucket}"):
                return await js.key_value(config.bucket)
            if count == 1 or exc.err_code != _NOT_CLUSTERED:
                raise
            log.warning("bucket %s: %d replicas refused (%s); using 1", config.bucket, count, exc)
    raise AssertionError("unreachable")


async def _exists(js: JetStreamContext, stream: str) -> bool:
    try:
        await js.stream_info(stream)
    except NotFoundError:
        return False
    return True
