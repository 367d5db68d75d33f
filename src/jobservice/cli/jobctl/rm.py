"""`jobctl rm`: remove finished jobs, their record and their output, from the server."""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import RPC_TIMEOUT, call
from jobservice.cli.jobctl.exitcodes import CliError, ExitCode, from_exception
from jobservice.cli.jobctl.params import JOB_ID
from jobservice.cli.jobctl.render import removed_line, still_running_line

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["command"]


@click.command("rm")
@click.argument("job_ids", metavar="JOB_ID...", nargs=-1, required=True, type=JOB_ID)
@click.pass_context
def command(ctx: click.Context, *, job_ids: tuple[int, ...]) -> int:
    """Remove finished jobs: their record and their output, now.

    Prints "Removed Job 'N'" for each. A running job is not removed ("Job 'N' is running:
    stop it first.", exit status 1); it takes the permission to stop the job. The server also
    removes finished jobs on its own after a while (docs/retention.md).
    """
    settings = settings_of(ctx)

    async def body(stub: JobServiceStub) -> list[CliError]:
        from jobservice.api.v1 import jobservice_pb2 as pb

        errors = []
        for job_id in job_ids:
            try:
                await stub.Remove(pb.RemoveRequest(job_id=job_id), timeout=RPC_TIMEOUT)
            except Exception as exc:
                if getattr(exc, "status", None) is None:  # not an answer: the connection broke
                    raise
                errors.append(_error(exc, settings.server, job_id))
                click.echo(errors[-1].message, err=True)
            else:
                click.echo(removed_line(job_id))
        return errors

    errors = call(settings, body, job=job_ids[0] if len(job_ids) == 1 else None)
    return int(errors[0].code) if errors else 0


def _error(exc: Exception, server: str, job_id: int) -> CliError:
    error = from_exception(exc, server=server, job=job_id)
    if error.code is ExitCode.NOT_RUNNING:  # FAILED_PRECONDITION: for rm, it still runs
        return CliError(still_running_line(job_id), ExitCode.NOT_RUNNING)
    return error
