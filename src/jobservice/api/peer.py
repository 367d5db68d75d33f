"""Who is on a TLS connection: the certificate's identity, read once per connection."""

from __future__ import annotations

import ssl
import weakref

from jobservice.security.errors import AuthenticationError
from jobservice.security.identity import Identity, identity_from_connection

__all__ = ["connection_identity"]

# The peer's certificate cannot change on a connection (TLS 1.3 has no renegotiation), so
# the answer for an SSLObject is final: parsing it again on every call cost ~5% of jobd's CPU
# per Start. Weak keys: an entry goes with its connection. A refusal is kept as its message.
_KNOWN: weakref.WeakKeyDictionary[ssl.SSLObject | ssl.SSLSocket, Identity | str] = (
    weakref.WeakKeyDictionary()
)


def connection_identity(ssl_obj: ssl.SSLObject | ssl.SSLSocket) -> Identity:
    """`identity_from_connection(ssl_obj)`, computed on the connection's first use only."""
    known = _KNOWN.get(ssl_obj)
    if known is None:
        try:
            known = identity_from_connection(ssl_obj)
        except AuthenticationError as exc:
            known = str(exc)
        _KNOWN[ssl_obj] = known
    if isinstance(known, str):
        raise AuthenticationError(known)
    return known
