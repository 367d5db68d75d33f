"""Certificates for a cluster's nodes and fronts, from the same development CA as users'.

A node (a host running a nats-server and an agent) gets serverAuth + clientAuth: NATS routes
are mutual TLS, each server a client of the others. A front gets clientAuth. Their subjects
carry an organizational unit (`OU=jobd-node`, `OU=jobd-front`) that user certificates never
have, so the NATS servers' certificate-to-user map can never take a user for a node or a front.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from jobservice.security.errors import PKIError
from jobservice.security.pki import (
    CLIENT_AUTH,
    SERVER_AUTH,
    SERVER_HOSTS,
    CertifiedKey,
    issue_certificate,
)

__all__ = [
    "FRONT_UNIT",
    "NODE_NAME",
    "NODE_UNIT",
    "ROUTE_NAME",
    "front_paths",
    "issue_cluster_certificates",
    "node_paths",
    "subject_of",
    "validate_node_name",
]

NODE_UNIT = "jobd-node"
FRONT_UNIT = "jobd-front"
# A DNS name every node certificate carries and no other does: the NATS servers accept a route
# (another server joining the cluster) only from a certificate that maps to this name, so
# neither a user's nor a front's certificate from the same CA can join.
ROUTE_NAME = "jobd-route"
# A node name is one NATS subject token (no dots or wildcards) and a CN.
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def validate_node_name(name: str) -> str:
    """`name` if it can name a node or a front, else PKIError."""
    if not NODE_NAME.fullmatch(name):
        raise PKIError(
            f"invalid node name {name!r}: use 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def subject_of(unit: str, name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def node_paths(out: Path, name: str) -> tuple[Path, Path]:
    """Where a node's certificate and key live under a PKI directory."""
    return out / "nodes" / f"{name}.pem", out / "nodes" / f"{name}.key"


def front_paths(out: Path, name: str) -> tuple[Path, Path]:
    """Where a front's certificate and key live under a PKI directory."""
    return out / "fronts" / f"{name}.pem", out / "fronts" / f"{name}.key"


def issue_cluster_certificates(
    ca: CertifiedKey, out: Path, nodes: Sequence[str], fronts: Sequence[str], *, days: int
) -> None:
    """Write nodes/NAME.{pem,key} and fronts/NAME.{pem,key} under `out`."""
    for name in nodes:
        if validate_node_name(name) == ROUTE_NAME:
            raise PKIError(f"{ROUTE_NAME!r} is the name every node certificate carries")
        cert, key = node_paths(out, name)
        cert.parent.mkdir(mode=0o700, exist_ok=True)
        hosts = (*dict.fromkeys((name, ROUTE_NAME, *SERVER_HOSTS)),)
        issue_certificate(
            ca,
            name,
            extended_key_usage=(SERVER_AUTH, CLIENT_AUTH),
            hosts=hosts,
            days=days,
            subject=subject_of(NODE_UNIT, name),
        ).write(cert, key)
    for name in fronts:
        validate_node_name(name)
        cert, key = front_paths(out, name)
        cert.parent.mkdir(mode=0o700, exist_ok=True)
        issue_certificate(
            ca,
            name,
            extended_key_usage=(CLIENT_AUTH,),
            days=days,
            subject=subject_of(FRONT_UNIT, name),
        ).write(cert, key)
