"""The caller's identity is read once per connection, and jobd does not load `cryptography` idle."""

from __future__ import annotations

import ssl
import subprocess
import sys

import pytest

from jobservice.api import peer
from jobservice.security.errors import AuthenticationError
from jobservice.security.identity import Identity


def _ssl_object() -> ssl.SSLObject:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)


def test_identity_is_computed_once_per_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def identify(ssl_obj: object) -> Identity:
        seen.append(ssl_obj)
        return Identity(f"user{len(seen)}")

    monkeypatch.setattr(peer, "identity_from_connection", identify)
    first, second = _ssl_object(), _ssl_object()
    assert peer.connection_identity(first) == Identity("user1")
    assert peer.connection_identity(first) == Identity("user1")
    assert peer.connection_identity(second) == Identity("user2")
    assert seen == [first, second]


def test_a_refusal_is_remembered_and_raised_on_every_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0

    def refuse(ssl_obj: object) -> Identity:
        nonlocal calls
        calls += 1
        raise AuthenticationError("the client presented no certificate")

    monkeypatch.setattr(peer, "identity_from_connection", refuse)
    conn = _ssl_object()
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="presented no certificate"):
            peer.connection_identity(conn)
    assert calls == 1


def test_jobd_serve_path_does_not_import_cryptography() -> None:
    code = (
        "import sys, jobservice.cli.jobd, jobservice.api.server;"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
