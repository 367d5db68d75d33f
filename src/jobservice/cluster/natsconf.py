"""nats-server configuration for a jobd cluster: TLS 1.3, certificates mapped to users, and
each user allowed exactly the subjects its role needs (docs/cluster.md, "Security model").

Fronts submit start and stop requests and may write a Lost record and its end marker; agents
publish output and records and heartbeat under their own name; any other certificate from the
CA (a user's) maps to no user and is refused. Routes between servers accept node certificates
only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jobservice.security.cluster_pki import (
    FRONT_UNIT,
    NODE_UNIT,
    ROUTE_NAME,
    node_paths,
    validate_node_name,
)

__all__ = ["ServerPlan", "front_user", "node_user", "server_config"]

# What both roles need to use JetStream: its API, acks and flow control, and replies.
_JS_CLIENT = ["$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>"]


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


def _node_entry(name: str) -> dict[str, object]:
    return {
        "user": node_user(name),
        "permissions": {
            "publish": {
                "allow": [
                    *_JS_CLIENT,
                    "jobd.out.>",
                    "$KV.jobd_jobs.>",
                    f"$KV.jobd_nodes.{name}",
                ]
            },
            "subscribe": {"allow": ["_INBOX.>", f"jobd.stop.{name}"]},
            "allow_responses": True,
        },
    }


def _front_entry(name: str) -> dict[str, object]:
    return {
        "user": front_user(name),
        "permissions": {
            "publish": {
                "allow": [
                    *_JS_CLIENT,
                    "jobd.start.>",
                    "jobd.stop.>",
                    "jobd.out.*.e",  # the end marker of a job it declares Lost
                    "$KV.jobd_jobs.>",  # ... and its Lost record
                    "$KV.jobd_nodes._front.>",  # its probe that the bucket takes writes
                ]
            },
            "subscribe": {"allow": ["_INBOX.>"]},
        },
    }
