"""HOST:PORT: one rule for jobd's --listen and jobctl's --server."""

from __future__ import annotations

import pytest

from jobservice.address import format_address, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:1234", ("localhost", 1234)),
        ("127.0.0.1:50051", ("127.0.0.1", 50051)),
        ("[::1]:9", ("::1", 9)),
        ("[fe80::1:2]:65535", ("fe80::1:2", 65535)),
    ],
)
def test_parse_address_round_trips(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected
    assert format_address(*expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":1",
        "h",
        "h:",
        "h:x",
        "h:0",
        "h:70000",
        "h:\u0661",  # a digit, but not an ASCII one
        "::1",  # IPv6 without brackets: ::1 port 50051, or the address ::1:50051?
        "::1:50051",
        "[::1]",
        "[::1]:",
        "[::1]x",
        "[::1",
        "[example.com]:1",
    ],
)
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_address(text)


def test_port_zero_and_default_port_only_when_asked() -> None:
    assert parse_address("127.0.0.1:0", allow_port_zero=True) == ("127.0.0.1", 0)
    assert parse_address("h", default_port=7) == ("h", 7)
    assert parse_address("[::1]", default_port=7) == ("::1", 7)
    with pytest.raises(ValueError, match="brackets"):
        parse_address("::1", default_port=7)
