"""HOST:PORT, read and written by one rule for every part of the project (jobd and jobctl alike).

An IPv6 address goes in brackets, `[::1]:50051`: written bare, `::1:50051` could be the address
`::1:50051` or `::1` port 50051, so a host with a colon outside brackets is refused, never
guessed at. Standard library only, so that any layer can use it.
"""

from __future__ import annotations

import ipaddress

__all__ = ["format_address", "parse_address"]


def parse_address(
    text: str, *, default_port: int | None = None, allow_port_zero: bool = False
) -> tuple[str, int]:
    """Split `HOST:PORT` or `[IPv6]:PORT` into host and port; ValueError when malformed.

    With `default_port`, the port may be left out (`HOST`, `[IPv6]`). Port 0 ("any free port")
    makes sense only for a listening address, hence `allow_port_zero`.
    """
    host, port_text = _split(text)
    if not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if port_text is None:
        if default_port is None:
            raise ValueError(f"expected HOST:PORT, got {text!r} (no port)")
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"the port {port_text!r} is not a number")
    port = int(port_text)
    if not (0 if allow_port_zero else 1) <= port < 65536:
        raise ValueError(f"port {port} is out of range")
    return host, port


def _split(text: str) -> tuple[str, str | None]:
    """Host and port text (None: no port given) of `text`."""
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [IPv6]:PORT, got {text!r}")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise ValueError(f"{inside!r} in brackets is not an IPv6 address") from None
        return inside, rest[1:] if rest else None
    host, colon, port_text = text.rpartition(":")
    if not colon:
        return text, None
    if ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, as [ADDRESS]:PORT (got {text!r})")
    return host, port_text


def format_address(host: str, port: int) -> str:
    """`HOST:PORT`, with an IPv6 address in brackets: the form `parse_address` reads."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
