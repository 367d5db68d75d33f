"""Every use of another project's private internals, and nothing else: the one place to look.

Each internal is used for a reason measured or required (the comment at each use says which),
wrapped in a small function or class here, and pinned by a contract test in
`tests/unit/test_upstream_contracts.py` that fails, naming the internal, when an upgrade moves
it. The projects are pinned exactly in pyproject.toml (`grpclib==`, `h2==`, `hyperframe==`);
an upgrade is: bump the pin, run those tests, adapt this package.

    grpclib_h2    grpclib's Channel/Server/H2Protocol/EventsProcessor/Stream internals and
                  the h2 connection object inside them
    hyperframe    a cheap repr for DATA frames (applied by the entry points, never on import)
    asyncio_tls   the server side of `loop.start_tls`, copied with a smaller read buffer
    openssl       OpenSSL calls `ssl` has no binding for, on an SSLContext's own SSL_CTX

Nothing here imports the rest of jobservice; the layers above import from here.
"""

from __future__ import annotations

__all__ = ["UpstreamChanged"]


class UpstreamChanged(RuntimeError):
    """An internal this package relies on is not what it was written against."""
