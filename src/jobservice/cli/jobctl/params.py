"""Options and argument types that several verbs share."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.shell_completion import CompletionItem

if TYPE_CHECKING:
    from jobservice.core.model import JobLimits

__all__ = [
    "JOB_ID",
    "MAX_JOB_ID",
    "JobIdCommand",
    "JobIdType",
    "env_dir_options",
    "limit_options",
    "limits_of",
    "stream_options",
]

F = TypeVar("F", bound=Callable[..., Any])


# Job ids are uint64 on the wire.
MAX_JOB_ID = 2**64 - 1
_NEGATIVE = re.compile(r"-[0-9]+")


class JobIdType(click.ParamType[int, Any]):
    """A job id: a whole number from 0, as `jobctl start` printed it."""

    name = "JOB_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()):
            self.fail(f"{value!r} is not a job id: {_JOB_IDS}.", param, ctx)
        if int(text) > MAX_JOB_ID:
            self.fail(f"{text} is not a job id: too large ({_JOB_IDS}).", param, ctx)
        return int(text)

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        from jobservice.cli.jobctl.complete import complete_job_ids  # noqa: PLC0415

        return complete_job_ids(ctx, incomplete)


_JOB_IDS = f"job ids are non-negative integers, at most {MAX_JOB_ID}"


class JobIdCommand(click.Command):
    """A verb whose arguments are job ids: `-1` is a bad id, not an unknown option."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for word in args:
            if word == "--":
                break
            if _NEGATIVE.fullmatch(word):
                raise click.BadParameter(
                    f"{word!r} is not a job id: {_JOB_IDS}.", ctx=ctx, param_hint="'JOB_ID'"
                )
        return super().parse_args(ctx, args)


JOB_ID = JobIdType()


def stream_options(func: F) -> F:
    """--stdout, --stderr, --all, stored as `streams`: both when both or none are given."""
    for name, text in (
        ("all", "Both streams, each to its own (default)."),
        ("stderr", "The job's stderr (written to stderr); with --stdout, both."),
        ("stdout", "The job's stdout; with --stderr, both."),
    ):
        func = click.option(
            f"--{name}",
            "streams",
            flag_value=name,
            multiple=True,  # the three share one list of what was asked for
            callback=_selected_streams,
            help=text,
        )(func)
    return func


def _selected_streams(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> str:
    """ "stdout" or "stderr" when only that one was asked for, else "all"."""
    asked = set(value)
    return asked.pop() if len(asked) == 1 else "all"


def env_dir_options(func: F) -> F:
    """--envs and --dir, shared by start and run."""
    func = click.option(
        "--dir",
        "directory",
        default="",
        metavar="DIR",
        help="Working directory on the server host; relative paths are made absolute "
        "against yours. Default: the home of the account the job runs as.",
    )(func)
    return click.option(
        "--envs",
        multiple=True,
        metavar="NAME=VALUE",
        help="One environment variable of the job; repeat for more. The job gets these "
        "(nothing leaks from the server's environment), and PATH (a safe default) and HOME "
        "where they leave them unset.",
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
