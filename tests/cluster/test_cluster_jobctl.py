"""jobctl against a cluster front: NODE column, `node` in JSON, `jobctl nodes`, `start --node`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from clusterhelp import Cluster

_JOBCTL = Path(sys.executable).with_name("jobctl")


def jobctl(cluster: Cluster, front: int, *args: str, user: str = "alice") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "XDG_CONFIG"))}
    env.update(
        JOBCTL_SERVER=cluster.fronts[front].target,
        JOBCTL_CERT=str(cluster.pki / f"{user}.pem"),
    )
    done = subprocess.run(
        [str(_JOBCTL), *args], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done
    return done.stdout.decode()


def test_jobctl_shows_nodes_and_starts_on_one(one_server: Cluster) -> None:
    job_id = jobctl(one_server, 0, "start", "--node", "n2", "--", "echo", "on n2").strip()
    assert jobctl(one_server, 1, "output", job_id) == "on n2\n"
    listed = jobctl(one_server, 1, "list").splitlines()
    assert listed[0].split()[:3] == ["ID", "OWNER", "NODE"]
    row = next(line.split() for line in listed if line.split()[0] == job_id)
    assert row[1:4] == ["alice", "n2", "exited"]
    as_json = json.loads(jobctl(one_server, 0, "status", "--json", job_id))
    assert as_json["node"] == "n2"
    nodes = json.loads(jobctl(one_server, 0, "nodes", "--json"))
    assert [(n["name"], n["alive"]) for n in nodes] == [("n1", True), ("n2", True)]
    table = jobctl(one_server, 1, "nodes", user="bob").splitlines()
    assert table[0].split() == ["NODE", "STATE", "RUNNING", "LAST", "SEEN"]
    assert [line.split()[:2] for line in table[1:]] == [["n1", "alive"], ["n2", "alive"]]
