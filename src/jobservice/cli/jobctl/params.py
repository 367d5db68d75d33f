"""Options and argument types that several verbs share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

__all__ = ["JOB_ID", "JobIdType", "env_dir_options", "stream_options"]

F = TypeVar("F", bound=Callable[..., Any])


class JobIdType(click.ParamType[int, Any]):
    """A job id: a whole number from 0, as `jobctl start` printed it."""

    name = "JOB_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if not text.isdigit():
            self.fail(f"{value!r} is not a job id (job ids are whole numbers from 0).", param, ctx)
        return int(text)


JOB_ID = JobIdType()


def stream_options(func: F) -> F:
    """--stdout | --stderr | --all, stored as `streams`; default all."""
    for name, text in (
        ("all", "Both streams, each to its own (default)."),
        ("stderr", "Only the job's stderr (written to stderr)."),
        ("stdout", "Only the job's stdout."),
    ):
        func = click.option(
            f"--{name}", "streams", flag_value=name, default=name == "all", help=text
        )(func)
    return func


def env_dir_options(func: F) -> F:
    """--envs and --dir, shared by start and run."""
    func = click.option(
        "--dir",
        "directory",
        default="",
        metavar="DIR",
        help="Working directory on the server host; relative paths are made absolute "
        "against yours. Default: /.",
    )(func)
    return click.option(
        "--envs",
        multiple=True,
        metavar="NAME=VALUE",
        help="One environment variable of the job; repeat for more. The job gets exactly "
        "these (nothing leaks from the server's environment); with none, its command is "
        "looked up on the server's safe default PATH.",
    )(func)
