"""Command-line types for job limits, shared by jobd and jobctl: sizes (256M), durations (30s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from jobservice.units import parse_duration, parse_size

__all__ = ["CORES", "DURATION", "SIZE"]


class _Parsed(click.ParamType[Any, Any]):
    """A positive size or duration, parsed by `jobservice.units`."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            parsed = self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if parsed <= 0:
            self.fail(f"{value!r} must be more than zero", param, ctx)
        return parsed


SIZE = _Parsed("SIZE", parse_size)
DURATION = _Parsed("DURATION", parse_duration)
CORES = click.FloatRange(min=0.01)
