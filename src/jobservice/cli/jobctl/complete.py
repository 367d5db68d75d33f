"""Shell completion of what only the server or the config file knows: job ids, profile names.

Completion runs jobctl with the words typed so far; any failure (no server, no certificate)
completes nothing rather than printing an error into the user's command line.
"""

# ruff: noqa: PLC0415 (the network stack only when completing a job id)

from __future__ import annotations

import os
from typing import Any

import click
from click.shell_completion import CompletionItem

from jobservice.cli.jobctl.config import Globals, config_path, settings_from

__all__ = ["complete_job_ids", "complete_profiles"]


def _globals(ctx: click.Context) -> Globals:
    """The global options typed so far (the group's callback does not run when completing)."""
    given: dict[str, Any] = ctx.find_root().params
    fields = ("server", "user", "cert", "key", "ca", "profile")
    return Globals(*(given.get(field) for field in fields))


def complete_job_ids(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """The ids of the jobs the user may see, newest first, each with its command as help."""
    from jobservice.cli.jobctl.connect import call
    from jobservice.cli.jobctl.list import list_jobs

    try:
        jobs = call(settings_from(_globals(ctx)), list_jobs)
    except Exception:  # completion must never fail loudly
        return []
    return [
        CompletionItem(str(job.id), help=" ".join((job.command, *job.args))[:60])
        for job in reversed(jobs)
        if str(job.id).startswith(incomplete)
    ]


def complete_profiles(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The profile names in the config file."""
    import tomllib

    try:
        data = tomllib.loads(config_path(os.environ).read_text())
    except (OSError, ValueError):
        return []
    profiles = data.get("profiles", {})
    names = sorted(profiles) if isinstance(profiles, dict) else []
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]
