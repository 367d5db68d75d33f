"""`jobctl nodes`: a cluster's nodes (agents), alive or not, with their running jobs."""

# ruff: noqa: PLC0415 (grpclib and protobuf load inside functions: docs/cli.md "Cold start")

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import RPC_TIMEOUT, call
from jobservice.cli.jobctl.render import columns

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["NodeView", "command", "list_nodes", "nodes_table"]


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node as jobctl shows it."""

    name: str
    alive: bool
    running_jobs: int
    last_seen: float  # seconds since the epoch

    def as_json(self) -> dict[str, Any]:
        from datetime import UTC, datetime

        seen = datetime.fromtimestamp(self.last_seen, tz=UTC).isoformat(timespec="milliseconds")
        return {
            "name": self.name,
            "alive": self.alive,
            "running_jobs": self.running_jobs,
            "last_seen": seen,
        }


async def list_nodes(stub: JobServiceStub) -> list[NodeView]:
    from jobservice.api.v1 import jobservice_pb2 as pb

    response = await stub.Nodes(pb.NodesRequest(), timeout=RPC_TIMEOUT)
    return [
        NodeView(n.name, n.alive, n.running_jobs, n.last_seen.seconds + n.last_seen.nanos / 1e9)
        for n in response.nodes
    ]


def nodes_table(nodes: list[NodeView]) -> str:
    """Aligned columns NODE STATE RUNNING LAST-SEEN, header first."""
    header = ("NODE", "STATE", "RUNNING", "LAST SEEN")
    rows = [
        (
            n.name,
            "alive" if n.alive else "down",
            str(n.running_jobs),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(n.last_seen)),
        )
        for n in nodes
    ]
    return columns(header, rows)


@click.command("nodes")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of nodes.")
@click.pass_context
def command(ctx: click.Context, *, as_json: bool) -> int:
    """List a cluster's nodes: name, liveness, running jobs, last heartbeat.

    A node is down when its heartbeats have stopped; its running jobs then become lost.
    A jobd that runs jobs on its own host has no nodes: the list is empty.
    """
    nodes = call(settings_of(ctx), list_nodes)
    if as_json:
        import json

        click.echo(json.dumps([n.as_json() for n in nodes]))
    elif nodes:
        click.echo(nodes_table(nodes))
    else:
        click.echo("no nodes: this jobd runs jobs on its own host", err=True)
    return 0
