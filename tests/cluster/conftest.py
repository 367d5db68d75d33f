"""Cluster fixtures: a PKI with nodes and fronts, and clusters of real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterhelp import FRONTS, NODES, Cluster
from jobdhelp import USERS

from jobservice.security.cluster_pki import issue_cluster_certificates
from jobservice.security.pki import CA_KEY, init_pki, load_certified_key


@pytest.fixture(scope="session")
def pki(cluster_pki: Path) -> Path:
    """Here the users' PKI is the cluster's, so `connect` reaches fronts with its CA."""
    return cluster_pki


@pytest.fixture(scope="session")
def cluster_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The development PKI plus node certificates n1-n3 and front certificates f1, f2."""
    out = tmp_path_factory.mktemp("cluster-pki")
    init_pki(out, USERS)
    ca = load_certified_key(out / "ca.pem", out / CA_KEY)
    issue_cluster_certificates(ca, out, NODES, FRONTS, days=1)
    return out


@pytest.fixture(scope="module")
def one_server(cluster_pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One nats-server, agents n1 and n2, fronts f1 and f2: shared by a module's tests."""
    with Cluster(cluster_pki, tmp_path_factory.mktemp("cluster1"), size=1) as cluster:
        cluster.start_front("f1")  # fronts create the streams agents wait for
        cluster.start_front("f2")
        cluster.start_agent("n1")
        cluster.start_agent("n2")
        yield cluster


@pytest.fixture
def three_servers(cluster_pki: Path, tmp_path: Path) -> Iterator[Cluster]:
    """Three routed nats-servers, for a test to add agents and fronts to (and kill)."""
    with Cluster(cluster_pki, tmp_path, size=3) as cluster:
        yield cluster
