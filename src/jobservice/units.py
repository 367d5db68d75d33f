"""Sizes and durations as people write them (`256M`, `1.5G`, `30s`, `2h`), both ways."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "h": 3600, "d": 86400}


def parse_size(text: str) -> int:
    """Bytes in `text`: a number with an optional binary suffix K, M, G or T (256M = 256 MiB)."""
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a size (examples: 268435456, 256M, 1.5G)")
    value = float(found.group(1)) * _SIZE_UNITS[found.group(2).upper()]
    return int(value)


def parse_duration(text: str) -> float:
    """Seconds in `text`: a number with an optional unit ms, s, m, h or d (seconds if none)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 1.5m, 2h, 45)")
    seconds = float(found.group(1)) * _DURATION_UNITS[(found.group(2) or "").lower()]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is too long")
    return seconds


def format_size(size: int) -> str:
    """`size` bytes in the largest unit it is a whole number of (256M), else in bytes."""
    for suffix in ("T", "G", "M", "K"):
        unit = _SIZE_UNITS[suffix]
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def format_duration(seconds: float) -> str:
    """`seconds` as jobctl takes it back: 30s, 5m, 2h (whole units), else seconds."""
    for suffix, unit in (("h", 3600), ("m", 60)):
        if seconds >= unit and seconds % unit == 0:
            return f"{int(seconds // unit)}{suffix}"
    return f"{seconds:g}s"
