"""TLS test fixtures: the session's PKI and a server context built by the code under test."""

from __future__ import annotations

import ssl

import pytest
from tlshelp import TlsPki, make_tls_pki

from jobservice.security.tls import server_context


@pytest.fixture(scope="session")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    """One PKI for every TLS test: made once, since key generation is the slow part."""
    return make_tls_pki(tmp_path_factory.mktemp("tls-pki"))


@pytest.fixture
def our_server_context(tls_pki: TlsPki) -> ssl.SSLContext:
    """The production server context, trusting the session CA and presenting server.pem."""
    return server_context(ca=tls_pki.ca, cert=tls_pki.server.cert, key=tls_pki.server.key)
