"""Client certificates unlike the PKI's, from the trusted CA's own key: no identity at jobd.

Minting these needs the CA's key, so this is defence in depth: a CA certificate, one without
basicConstraints, one signed with SHA-256 or SHA-512, and CNs in BMPString or TeletexString
(decoded differently from one library to the next) all got through before; now each gets
UNAUTHENTICATED on every call, while a certificate built as the PKI builds one is served.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from certhelp import END_ENTITY, Hash, StringType, mint_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from grpclib.const import Status
from jobdhelp import Jobd, status_of

from jobservice.api import JobServiceStub, close_channel, open_channel
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.security import pki as devpki

CA_TRUE = x509.BasicConstraints(ca=True, path_length=None)
KINDS: dict[str, tuple[x509.BasicConstraints | None, Hash, StringType]] = {
    "as-the-pki-does": (END_ENTITY, hashes.SHA384(), StringType.UTF8String),
    "printablestring-cn": (END_ENTITY, hashes.SHA384(), StringType.PrintableString),
    "ca-true": (CA_TRUE, hashes.SHA384(), StringType.UTF8String),
    "no-basic-constraints": (None, hashes.SHA384(), StringType.UTF8String),
    "ecdsa-with-sha256": (END_ENTITY, hashes.SHA256(), StringType.UTF8String),
    "ecdsa-with-sha512": (END_ENTITY, hashes.SHA512(), StringType.UTF8String),
    "bmpstring-cn": (END_ENTITY, hashes.SHA384(), StringType.BMPString),
    "teletexstring-cn": (END_ENTITY, hashes.SHA384(), StringType.T61String),
}
SERVED = ("as-the-pki-does", "printablestring-cn")


def mint(pki: Path, kind: str, out: Path) -> tuple[Path, Path]:
    """alice's certificate, as `kind` says, signed with the trusted CA's key."""
    basic, algorithm, cn_type = KINDS[kind]
    ca = devpki.load_certified_key(pki / "ca.pem", pki / devpki.CA_KEY)
    cert, key = out / f"{kind}.pem", out / f"{kind}.key"
    mint_client(ca, basic=basic, algorithm=algorithm, cn_type=cn_type).write(cert, key)
    return cert, key


@pytest.mark.parametrize("kind", list(KINDS))
async def test_only_certificates_like_the_pkis_have_an_identity(
    shared_jobd: Jobd, pki: Path, tmp_path: Path, kind: str
) -> None:
    cert, key = mint(pki, kind, tmp_path)
    channel = await open_channel(shared_jobd.target, ca=pki / "ca.pem", cert=cert, key=key)
    try:
        stub = JobServiceStub(channel)
        status, _ = await status_of(stub.List(pb.ListRequest()))
    finally:
        await close_channel(channel)
    assert status is (Status.OK if kind in SERVED else Status.UNAUTHENTICATED)
