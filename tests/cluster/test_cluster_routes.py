"""Routes: only a node certificate may join the NATS cluster, not any certificate of the CA."""

from __future__ import annotations

import shutil
from pathlib import Path

from clusterhelp import Cluster, NatsServer, free_port

from jobservice.cluster.natsconf import ServerPlan, server_config
from jobservice.security.cluster_pki import node_paths
from jobservice.security.pki import (
    CLIENT_AUTH,
    SERVER_AUTH,
    SERVER_HOSTS,
    ca_key_path,
    issue_certificate,
    load_certified_key,
)


def test_a_server_without_a_node_certificate_cannot_route(
    three_servers: Cluster, cluster_pki: Path, tmp_path: Path
) -> None:
    # Same CA, both key usages a route needs, but not a node certificate (no route name).
    pki = tmp_path / "rogue-pki"
    shutil.copytree(cluster_pki, pki, ignore=shutil.ignore_patterns("nodes", "fronts"))
    ca = load_certified_key(pki / "ca.pem", ca_key_path(pki))
    cert, key = node_paths(pki, "rogue")
    cert.parent.mkdir()
    issue_certificate(
        ca, "rogue", extended_key_usage=(SERVER_AUTH, CLIENT_AUTH), hosts=SERVER_HOSTS
    ).write(cert, key)
    plan = ServerPlan("rogue", "127.0.0.1", free_port(), free_port(), tmp_path / "store-rogue")
    routes = [f"127.0.0.1:{s.plan.cluster_port}" for s in three_servers.servers]
    config = tmp_path / "rogue.conf"
    config.write_text(server_config(plan, pki=pki, routes=routes, nodes=["rogue"], fronts=[]))
    rogue = NatsServer(plan)
    rogue.process = three_servers.spawn("nats-rogue", ["-c", str(config)])
    rogue.process.wait_for_log("Authorization Violation")
    victim = three_servers.servers[0].process
    assert victim is not None
    victim.wait_for_log("authentication error")
