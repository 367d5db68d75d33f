"""The cluster's exceptions, each a kind of the library's own so the API maps them unchanged.

JobError (core)
├── InvalidRequest
│   └── NodeNotFound      `--node` names no agent the cluster has seen
└── SpawnFailed
    └── NodeUnavailable   no agent took the request in time, or the job's agent is down
ClusterError              the cluster cannot be used at all (configuration, connection)
"""

from __future__ import annotations

from jobservice.core.errors import InvalidRequest, SpawnFailed

__all__ = ["ClusterError", "NodeNotFound", "NodeUnavailable"]


class ClusterError(Exception):
    """The NATS cluster cannot be reached or set up; raised at start-up, never to a caller."""


class NodeNotFound(InvalidRequest):
    """A start names a node that no agent has announced."""

    def __init__(self, node: str) -> None:
        super().__init__(f"no node named {node!r} in the cluster (see `jobctl nodes`)")
        self.node = node


class NodeUnavailable(SpawnFailed):
    """No agent answered in time: none has capacity, or the job's agent is down."""
