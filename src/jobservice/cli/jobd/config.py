"""`jobd serve --config FILE`: every flag of `jobd serve` from a TOML file; flags override it.

The file is flat: one key per flag, named as the flag without its dashes (`data-dir`,
`max-jobs-per-user`, `metrics-listen`), with the value the flag would take (`verbose = true`).
A key that names no flag, or a table or array, is an error, so a typo never passes silently.
Relative paths are relative to the file's directory, not to wherever jobd was started from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["config_option", "load_defaults"]

_NOT_FROM_FILE = frozenset({"config", "help"})


def load_defaults(command: click.Command, path: Path) -> dict[str, Any]:
    """`command`'s parameter values from the TOML file `path`, keyed by parameter name."""
    try:
        with Path(path).open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--config") from None
    options = {
        _key(param): param
        for param in command.params
        if isinstance(param, click.Option) and param.name not in _NOT_FROM_FILE
    }
    unknown = sorted(set(data) - options.keys())
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown key(s) {', '.join(unknown)}; the keys are the flags of "
            f"`jobd serve` without their dashes: {', '.join(sorted(options))}",
            param_hint="--config",
        )
    defaults: dict[str, Any] = {}
    for key, value in data.items():
        param = options[key]
        if isinstance(value, dict | list):
            raise click.BadParameter(
                f"{path}: {key} must be a single value, not a table or an array",
                param_hint="--config",
            )
        assert param.name is not None
        if isinstance(param.type, click.Path) and isinstance(value, str):
            defaults[param.name] = str(Path(path).parent / Path(value).expanduser())
        else:
            defaults[param.name] = value
    return defaults


def config_option(command: F) -> F:
    """Add `--config FILE` to `command`, read before every other option."""
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=_apply,
        help="Read flags from this TOML file (keys: the flags without dashes, e.g. "
        'data-dir = "/var/lib/jobd"); flags on the command line win.',
    )(command)


def _apply(ctx: click.Context, _: click.Parameter, path: Path | None) -> None:
    if path is not None:
        ctx.default_map = {**(ctx.default_map or {}), **load_defaults(ctx.command, path)}


def _key(option: click.Option) -> str:
    """The flag's long name without dashes: `--data-dir` -> `data-dir`."""
    longs = [opt for opt in option.opts if opt.startswith("--")]
    return (longs[0] if longs else option.opts[0]).lstrip("-")
