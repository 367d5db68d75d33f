"""Command-line values with units: durations (`7d`, `12h`) and byte counts (`10G`)."""

from __future__ import annotations

import re
from typing import Any, cast

import click

__all__ = ["BYTES", "DURATION", "parse_bytes", "parse_duration"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)", re.ASCII)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_BYTES = re.compile(r"(\d+)([KMGT]?)(i?B)?", re.ASCII | re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def parse_duration(text: str) -> float | None:
    """Seconds in `30s`, `15m`, `12h`, `7d` or a plain number; None for `forever`."""
    if text == "forever":
        return None
    found = _DURATION.fullmatch(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 12h, 7d or forever")
    return float(found.group(1)) * _SECONDS[found.group(2)]


def parse_bytes(text: str) -> int:
    """Bytes in `1048576`, `512K`, `10M`, `2G` (powers of 1024; `MiB` and `MB` alike)."""
    found = _BYTES.fullmatch(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a size like 1048576, 512K, 10M or 2G")
    power: int = _POWERS[found.group(2).upper()]
    count = int(found.group(1))
    return count << (10 * power)


class _Duration(click.ParamType[float | None, Any]):
    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if not isinstance(value, str):
            return cast(float | None, value)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class _Bytes(click.ParamType[int, Any]):
    name = "BYTES"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_bytes(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = _Duration()
BYTES = _Bytes()
