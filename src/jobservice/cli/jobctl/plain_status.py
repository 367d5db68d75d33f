"""`jobctl status` in its plain forms, run without importing click (the polling hot path).

A cold `jobctl status` is mostly imports, and about 10 ms of ~100 are click's own (the rest of
its import, inspect, typing and enum, the network stack needs anyway; docs/cli.md, "Cold
start"). So `main()` first asks `parse_plain` whether the arguments are a plain status line,

    [OPTION VALUE | --OPTION=VALUE]... status JOB_ID [--json]

with only jobctl's global options, values that neither are empty nor start with `-`, readable
files for --cert/--key/--ca, and a JOB_ID of ASCII digits. If so it runs `show_status` with
exactly what click would have parsed; for anything else (help, another verb, an unknown or
malformed option, a value click would refuse, shell completion) it returns None and click parses
the whole line as always. A unit test checks against click's own parser that wherever this
module accepts a line, click reads it the same way.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

from jobservice.cli.jobctl.config import Globals, Settings, settings_from
from jobservice.cli.jobctl.connect import RPC_TIMEOUT, call
from jobservice.cli.jobctl.render import job_json, status_line

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub
    from jobservice.core.model import JobInfo

__all__ = ["PlainStatus", "job_status", "parse_plain", "show_status"]

# The group's options (app.py) and the Globals field each sets.
_OPTIONS = {
    "-s": "server",
    "--server": "server",
    "-u": "user",
    "--user": "user",
    "-c": "cert",
    "--cert": "cert",
    "-k": "key",
    "--key": "key",
    "--ca": "ca",
    "--profile": "profile",
}
_PATHS = ("cert", "key", "ca")  # click.Path(dir_okay=False) options
_MAX_JOB_ID = 2**64 - 1  # params.MAX_JOB_ID, here so that click is not imported
_COMPLETE_VAR = "_JOBCTL_COMPLETE"  # set by the shell completion scripts; click handles it


class PlainStatus(NamedTuple):
    """A plain `status` line, parsed: what the click group and command would receive."""

    given: Globals
    job_id: int
    as_json: bool

    def run(self) -> int:
        return show_status(settings_from(self.given), self.job_id, as_json=self.as_json)


def parse_plain(args: Sequence[str], env: Mapping[str, str]) -> PlainStatus | None:
    """`args` as click would parse them if they are a plain status line, else None."""
    if _COMPLETE_VAR in env:
        return None
    values: dict[str, str] = {}
    rest = list(args)
    while rest and rest[0] != "status":
        option = _option(rest)
        if option is None:
            return None
        field, value, used = option
        values[field] = value  # a repeated option: the last one counts, as in click
        del rest[:used]
    job_ids = [word for word in rest[1:] if word != "--json"]
    if not rest or len(job_ids) != 1 or not (job_ids[0].isascii() and job_ids[0].isdigit()):
        return None
    if int(job_ids[0]) > _MAX_JOB_ID:  # click says why
        return None
    given = Globals(**{field: values.get(field) for field in _OPTIONS.values()})
    return PlainStatus(given, int(job_ids[0]), as_json="--json" in rest)


def _option(words: list[str]) -> tuple[str, str, int] | None:
    """The global option at the start of `words`: its field, value and number of words."""
    name, equals, attached = words[0].partition("=")
    if equals and name.startswith("--"):  # --server=VALUE
        field, value, used = _OPTIONS.get(name), attached, 1
    elif not equals and len(words) > 1:  # -s VALUE, --server VALUE
        field, value, used = _OPTIONS.get(name), words[1], 2
    else:
        return None
    if field is None or not value or value.startswith("-"):
        return None
    if field in _PATHS and not _path_click_accepts(value):
        return None
    return field, value, used


def _path_click_accepts(value: str) -> bool:
    """Whether click.Path(dir_okay=False) passes `value` through: missing, or a readable file."""
    try:
        mode = os.stat(value).st_mode
    except OSError:
        return True
    return not stat.S_ISDIR(mode) and os.access(value, os.R_OK)


async def job_status(stub: JobServiceStub, job_id: int) -> JobInfo:
    from jobservice.api import pb, status_to_info  # noqa: PLC0415 (docs/cli.md)

    response = await stub.Status(pb.StatusRequest(job_id=job_id), timeout=RPC_TIMEOUT)
    return status_to_info(response.status)


def show_status(settings: Settings, job_id: int, *, as_json: bool) -> int:
    """Print the job's status line (or JSON object); the body of `jobctl status`."""
    job = call(settings, lambda stub: job_status(stub, job_id), job=job_id)
    if as_json:
        import json  # noqa: PLC0415 (only for --json)

        _echo(json.dumps(job_json(job)))
    else:
        _echo(status_line(job))
    return 0


def _echo(line: str) -> None:
    """`line` on stdout as click.echo writes it; this ASCII text has no escapes to strip."""
    if sys.stdout is not None:  # click.echo writes nothing when there is no stdout
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
