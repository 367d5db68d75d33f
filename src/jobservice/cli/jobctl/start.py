"""`jobctl start`: start a job and print its id (`--cmd/--args` or the short `-- CMD ARG...`)."""

# Modules that not every run needs (grpclib, protobuf, cryptography, json) are imported inside
# functions, so that help, usage errors and plain output stay fast: docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import RPC_TIMEOUT, call
from jobservice.cli.jobctl.params import env_dir_options, limit_options, limits_of
from jobservice.cli.jobctl.render import job_json
from jobservice.core.model import NO_LIMITS, JobLimits

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub
    from jobservice.core.model import JobInfo

__all__ = ["StartArgs", "command", "start_job"]

# NAME=VALUE with a NAME a shell can use (POSIX: letters, digits and _, not starting with a digit).
_ENV_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.DOTALL)


@dataclass(frozen=True, slots=True)
class StartArgs:
    """What to run, as the server's StartRequest wants it."""

    command: str
    args: tuple[str, ...]
    dir: str
    env: tuple[str, ...]
    limits: JobLimits = NO_LIMITS
    node: str = ""  # a cluster node to run it on; empty: any agent with capacity
    stdin: bool = False  # keep the job's stdin open for `run -i` to feed

    @classmethod
    def build(
        cls,
        cmd: str | None,
        args: Sequence[str],
        envs: Sequence[str],
        directory: str,
        argv: Sequence[str],
        *,
        limits: JobLimits = NO_LIMITS,
        node: str = "",
    ) -> StartArgs:
        """Check and merge the two ways of naming a command; raise click.UsageError if wrong."""
        if cmd and argv:
            words = " ".join(argv)
            raise click.UsageError(
                f"Unexpected {words!r} after --cmd {cmd}: with --cmd, give each argument with "
                f"--args (--cmd {cmd} --args {argv[0]}), or the whole command after -- "
                f"(-- {cmd} {words})."
            )
        if argv and args:
            raise click.UsageError("--args goes with --cmd; after -- every word is an argument.")
        if cmd:
            name, arguments = cmd, tuple(args)
        elif argv:
            name, arguments = argv[0], tuple(argv[1:])
        else:
            raise click.UsageError("No command: use --cmd CMD or -- CMD ARG...")
        _check_text("--cmd" if cmd else "CMD", [name])
        _check_text("--args" if cmd else "ARG", arguments)
        _check_text("--envs", envs)
        _check_text("--dir", [directory])
        for entry in envs:
            if not _ENV_ENTRY.fullmatch(entry):
                raise click.BadParameter(
                    f"{entry!r} is not NAME=VALUE with a NAME of letters, digits and '_' that "
                    "does not start with a digit.",
                    param_hint="'--envs'",
                )
        # A relative directory means one relative to where the user stands, as locally.
        where = os.path.abspath(directory) if directory else ""
        return cls(
            command=name, args=arguments, dir=where, env=tuple(envs), limits=limits, node=node
        )


def _check_text(option: str, values: Sequence[str]) -> None:
    """Refuse bytes that are not UTF-8 (a job's words are text on the wire), as a usage error."""
    for value in values:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # what Python makes of non-UTF-8 bytes in argv
            raw = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise click.BadParameter(
                f"'{raw}' is not valid UTF-8; a job's command, arguments, environment and "
                "directory are text.",
                param_hint=f"'{option}'",
            ) from None


async def start_job(stub: JobServiceStub, spec: StartArgs) -> JobInfo:
    """Start the job; its status right after starting."""
    from jobservice.api import pb, status_to_info

    request = pb.StartRequest(
        command=spec.command,
        args=list(spec.args),
        dir=spec.dir,
        env=list(spec.env),
        node=spec.node,
        stdin=spec.stdin,
    )
    limits = spec.limits
    if limits.cpu is not None:
        request.limits.cpu = limits.cpu
    if limits.memory is not None:
        request.limits.memory_bytes = limits.memory
    if limits.pids is not None:
        request.limits.pids = limits.pids
    if limits.timeout is not None:
        request.limits.timeout_seconds = limits.timeout
    response = await stub.Start(request, timeout=RPC_TIMEOUT)
    return status_to_info(response.status)


@click.command("start", context_settings={"allow_interspersed_args": False})
@click.option("--cmd", metavar="CMD", help="Command: a path, or a name found on the job's PATH.")
@click.option("--args", multiple=True, metavar="ARG", help="One argument; repeat for more.")
@env_dir_options
@limit_options
@click.option(
    "--node", default="", metavar="NODE", help="Cluster only: the node to run it on (jobctl nodes)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (docs/cli.md).")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD ARG...]")
@click.pass_context
def command(
    ctx: click.Context,
    /,
    *,
    cmd: str | None,
    args: tuple[str, ...],
    envs: tuple[str, ...],
    directory: str,
    node: str,
    as_json: bool,
    argv: tuple[str, ...],
    **limits: Any,
) -> int:
    """Start a job and print its id.

    \b
    Examples:
      jobctl start --cmd echo --args "hello world" --envs PATH=/usr/bin --dir /tmp
      jobctl start -- sleep 10000
      jobctl start --dir . -- make test
      jobctl start --cpu 0.5 --memory 256M --pids 100 --timeout 30s -- ./crunch
      jobctl start --node h2 -- uptime       # on a cluster: on node h2
    """
    spec = StartArgs.build(cmd, args, envs, directory, argv, limits=limits_of(limits), node=node)
    settings = settings_of(ctx)

    async def body(stub: JobServiceStub) -> JobInfo:
        return await start_job(stub, spec)

    job = call(settings, body)
    if as_json:
        import json

        click.echo(json.dumps(job_json(job)))
    else:
        click.echo(job.id)
    return 0
