"""Options and argument types that several verbs share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from jobservice.core.model import JobLimits

__all__ = ["JOB_ID", "JobIdType", "env_dir_options", "limit_options", "limits_of", "stream_options"]

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


def limit_options(func: F) -> F:
    """--cpu, --memory, --pids and --timeout, shared by start and run (unset: server default)."""
    from jobservice.cli.limits import CORES, DURATION, SIZE  # noqa: PLC0415 (only when used)

    options = (
        (
            "--timeout",
            DURATION,
            "Wall time, then the job is stopped as by `jobctl stop` (30s, 2h).",
        ),
        ("--pids", click.IntRange(min=1), "Processes the job may have at once."),
        ("--memory", SIZE, "Memory the job may use, without swap (256M, 1G)."),
        ("--cpu", CORES, "CPU time in cores (0.5: half of one core)."),
    )
    for flag, kind, text in options:
        func = click.option(flag, type=kind, help=text + " Default: the server's.")(func)
    return func


def limits_of(options: dict[str, Any]) -> JobLimits:
    """The JobLimits given by `limit_options`' flags."""
    from jobservice.core.model import JobLimits  # noqa: PLC0415

    return JobLimits(
        cpu=options.get("cpu"),
        memory=options.get("memory"),
        pids=options.get("pids"),
        timeout=options.get("timeout"),
    )
