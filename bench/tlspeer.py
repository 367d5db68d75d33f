"""The TLS limit: plain TLS sockets with jobservice's own contexts (TLS 1.3, AES-256-GCM, P-384).

python -m bench.tlspeer serve PKI_DIR BYTES     # prints its port, then serves until killed
python -m bench.tlspeer fetch PKI_DIR PORT BYTES > /dev/null
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from jobservice.security import tls

__all__ = ["fetch", "serve"]

_BUFFER = 256 << 10


def serve(pki: Path, size: int) -> None:
    """Send `size` zero bytes to each client that connects, one client at a time."""
    context = tls.server_context(ca=pki / "ca.pem", cert=pki / "server.pem", key=pki / "server.key")
    payload = memoryview(bytes(_BUFFER))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        print(listener.getsockname()[1], flush=True)
        while True:  # ended by the benchmark, by pid
            raw, _ = listener.accept()
            with context.wrap_socket(raw, server_side=True) as conn:
                tls.check_negotiated(conn)
                left = size
                while left > 0:
                    n = min(left, _BUFFER)
                    conn.sendall(payload[:n])
                    left -= n


def fetch(pki: Path, port: int, size: int) -> None:
    """Receive `size` bytes and write them to stdout, as `jobctl output` would."""
    context = tls.client_context(ca=pki / "ca.pem", cert=pki / "alice.pem", key=pki / "alice.key")
    buffer = bytearray(_BUFFER)
    view = memoryview(buffer)
    raw = socket.create_connection(("127.0.0.1", port))
    with context.wrap_socket(raw, server_hostname="localhost") as conn:
        tls.check_negotiated(conn)
        got = 0
        while got < size:
            n = conn.recv_into(buffer)
            if not n:
                raise SystemExit(f"connection closed after {got} of {size} bytes")
            _write_all(view[:n])
            got += n


def _write_all(data: memoryview) -> None:
    while data:
        data = data[os.write(1, data) :]


def main(argv: list[str]) -> None:
    if argv[0] == "serve":
        serve(Path(argv[1]), int(argv[2]))
    else:
        fetch(Path(argv[1]), int(argv[2]), int(argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
