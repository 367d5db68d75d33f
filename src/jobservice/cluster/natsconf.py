"""nats-server configuration for a jobd cluster: TLS 1.3, certificates mapped to users, and
each user allowed exactly the subjects its role needs (docs/cluster.md, "Security model").

Fronts submit start and stop requests, create the streams and buckets, and may write a Lost
record and its end marker; agents publish output and records and heartbeat under their own
name. Each role gets exactly the JetStream API subjects it uses, named by stream and consumer:
no node can create, delete or purge a stream, or read another node's start requests. Any
other certificate from the CA (a user's) maps to no user and is refused. Routes between
servers accept node certificates only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jobservice.cluster import layout
from jobservice.security.cluster_pki import (
    FRONT_UNIT,
    NODE_UNIT,
    ROUTE_NAME,
    node_paths,
    validate_node_name,
)

__all__ = ["ServerPlan", "front_user", "node_user", "server_config"]


def node_user(name: str) -> str:
    """The NATS user a node's certificate maps to (the subject as the Go server prints it)."""
    return f"CN={name},OU={NODE_UNIT}"


def front_user(name: str) -> str:
    return f"CN={name},OU={FRONT_UNIT}"


@dataclass(frozen=True)
class ServerPlan:
    """One nats-server of the cluster."""

    name: str  # a node name: its certificate is nodes/NAME.pem
    host: str
    port: int  # client port
    cluster_port: int  # route port
    store_dir: Path


def server_config(
    plan: ServerPlan,
    *,
    pki: Path,
    routes: Sequence[str],
    nodes: Sequence[str],
    fronts: Sequence[str],
) -> str:
    """The configuration file of server `plan`, routing to `routes` (host:port of the others).

    `nodes` and `fronts` are every node and front of the cluster (their certificates' users).
    """
    cert, key = node_paths(pki, validate_node_name(plan.name))
    tls = {
        "cert_file": str(cert.resolve()),
        "key_file": str(key.resolve()),
        "ca_file": str((pki / "ca.pem").resolve()),
        "min_version": "1.3",
        "timeout": 5,
    }
    users = [_node_entry(validate_node_name(n)) for n in nodes]
    users += [_front_entry(validate_node_name(f)) for f in fronts]
    config = {
        "server_name": plan.name,
        "listen": f"{plan.host}:{plan.port}",
        "max_payload": 8 << 20,
        "jetstream": {"store_dir": str(plan.store_dir), "max_memory_store": 64 << 20},
        "tls": {**tls, "verify_and_map": True},
        "authorization": {"users": users},
        "cluster": {
            "name": "jobd",
            "listen": f"{plan.host}:{plan.cluster_port}",
            "routes": [f"tls://{r}" for r in routes],
            # Mutual TLS, and only a node certificate (which alone names ROUTE_NAME) may route.
            "tls": {**tls, "verify_and_map": True},
            "authorization": {"user": ROUTE_NAME},
        },
    }
    if not routes:
        del config["cluster"]
    # JSON is a subset of the server's configuration syntax.
    return json.dumps(config, indent=2) + "\n"


def _api(*operations: str) -> list[str]:
    return [f"$JS.API.{op}" for op in operations]


# Every stream and bucket stream of the layout: both roles read their configuration and wait
# for their leaders.
_STREAMS = (
    layout.START_STREAM,
    layout.OUTPUT_STREAM,
    f"KV_{layout.JOBS_BUCKET}",
    f"KV_{layout.NODES_BUCKET}",
)
_JOBS_KV = f"KV_{layout.JOBS_BUCKET}"
_NODES_KV = f"KV_{layout.NODES_BUCKET}"


def _node_entry(name: str) -> dict[str, object]:
    """An agent: takes starts from the shared consumer and its own, publishes output and
    records, heartbeats under its own name, reads records. It may create one consumer (its own,
    on its own subject: the filter is part of the permitted subject, and the server checks it
    against the request) and ephemeral watches of the jobs bucket; nothing else of the API: no
    stream is created, changed, deleted or purged by a node."""
    own = layout.node_consumer(name)
    own_subject = layout.start_subject(name)
    start = layout.START_STREAM
    return {
        "user": node_user(name),
        "permissions": {
            "publish": {
                "allow": [
                    *_api(*(f"STREAM.INFO.{s}" for s in _STREAMS)),
                    *_api(
                        f"CONSUMER.INFO.{start}.{layout.ANY_CONSUMER}",
                        f"CONSUMER.INFO.{start}.{own}",
                        f"CONSUMER.CREATE.{start}.{own}.{own_subject}",
                        f"CONSUMER.MSG.NEXT.{start}.{layout.ANY_CONSUMER}",
                        f"CONSUMER.MSG.NEXT.{start}.{own}",
                        f"CONSUMER.CREATE.{_JOBS_KV}",  # its watch at start (its old jobs)
                        f"CONSUMER.INFO.{_JOBS_KV}.*",  # ... and how much it has to read
                        f"STREAM.MSG.GET.{_JOBS_KV}",  # a record whose update failed
                    ),
                    f"$JS.ACK.{start}.{layout.ANY_CONSUMER}.>",
                    f"$JS.ACK.{start}.{own}.>",
                    f"$JS.FC.{_JOBS_KV}.>",
                    "jobd.out.>",  # output chunks and end markers
                    f"$KV.{layout.JOBS_BUCKET}.>",  # records
                    f"$KV.{layout.NODES_BUCKET}.{name}",  # its own heartbeat only
                    f"{layout.front_inbox()}.>",  # its answers to starts
                ]
            },
            "subscribe": {
                "allow": [
                    f"{layout.node_inbox(name)}.>",
                    layout.stop_subject(name),
                    layout.stdin_subject(name),  # its jobs' stdin, answered once written
                ]
            },
            "allow_responses": True,  # its answers to stops and stdin
        },
    }


def _front_entry(name: str) -> dict[str, object]:
    """A front: creates the layout (streams, buckets and the shared start consumer, by name;
    never updates or deletes one), submits starts and stops, follows output and watches both
    buckets through ephemeral consumers, declares jobs Lost, and removes a job (its record,
    and its output: the one purge any role may do, of JOBD_OUTPUT)."""
    start, output = layout.START_STREAM, layout.OUTPUT_STREAM
    any_consumer = layout.ANY_CONSUMER
    return {
        "user": front_user(name),
        "permissions": {
            "publish": {
                "allow": [
                    *_api(*(f"STREAM.INFO.{s}" for s in _STREAMS)),
                    *_api(*(f"STREAM.CREATE.{s}" for s in _STREAMS)),
                    *_api(
                        f"CONSUMER.INFO.{start}.{any_consumer}",
                        f"CONSUMER.CREATE.{start}.{any_consumer}.{layout.START_ANY}",
                        f"CONSUMER.CREATE.{output}",  # followers (ephemeral, ordered)
                        f"CONSUMER.CREATE.{_JOBS_KV}",  # watches, and how much they have
                        f"CONSUMER.CREATE.{_NODES_KV}",  # to read
                        f"CONSUMER.INFO.{_JOBS_KV}.*",
                        f"CONSUMER.INFO.{_NODES_KV}.*",
                        f"STREAM.MSG.GET.{_JOBS_KV}",  # a job started through another front
                        f"STREAM.MSG.GET.{_NODES_KV}",  # a node's heartbeat, before Lost
                        f"STREAM.MSG.GET.{output}",  # resuming at an offset: the search
                        f"STREAM.PURGE.{output}",  # jobctl rm: one job's subject
                    ),
                    *(f"$JS.FC.{s}.>" for s in (output, _JOBS_KV, _NODES_KV)),
                    "jobd.start.>",
                    "jobd.stop.>",
                    "jobd.stdin.>",  # a job's stdin, to the job's node
                    "jobd.out.*.e",  # the end marker of a job it declares Lost
                    f"$KV.{layout.JOBS_BUCKET}.>",  # ... and its Lost record, or removal
                    f"$KV.{layout.NODES_BUCKET}.{layout.FRONT_PROBE_PREFIX}>",  # its probe
                ]
            },
            "subscribe": {"allow": [f"{layout.front_inbox()}.>"]},
        },
    }
