"""Global options after the verb too (`jobctl list --profile ops`), as kubectl takes them.

jobctl's group declares the options (app.py); each verb also gets hidden copies, so that a flag
typed after the verb means the same as before it. Given in both places, the later one counts,
as a repeated option does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from jobservice.cli.jobctl.config import Globals

__all__ = ["GLOBAL_FLAGS", "after_verb_options"]

# Each global option's flags, by the Globals field it sets (the group's options in app.py).
GLOBAL_FLAGS = {
    "server": ("-s", "--server"),
    "user": ("-u", "--user"),
    "cert": ("-c", "--cert"),
    "key": ("-k", "--key"),
    "ca": ("--ca",),
    "profile": ("--profile",),
}


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is None or param.name is None:
        return
    given = ctx.find_object(Globals) or Globals(None, None, None, None, None, None)
    ctx.obj = dataclasses.replace(given, **{param.name: value})


def after_verb_options() -> list[click.Parameter]:
    """Hidden copies of the global options for a verb; they update the verb's Globals."""
    return [
        click.Option(
            list(flags),
            field,
            hidden=True,
            expose_value=False,
            callback=_set_global,
            type=click.Path(dir_okay=False) if field in ("cert", "key", "ca") else None,
        )
        for field, flags in GLOBAL_FLAGS.items()
    ]
