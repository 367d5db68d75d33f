"""`jobctl rm`: remove finished jobs, their record and their output, from the server."""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import RPC_TIMEOUT
from jobservice.cli.jobctl.each import for_each_job
from jobservice.cli.jobctl.exitcodes import CliError, ExitCode
from jobservice.cli.jobctl.params import JOB_ID, JobIdCommand
from jobservice.cli.jobctl.render import removed_line, still_running_line

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["command"]


@click.command("rm", cls=JobIdCommand)
@click.argument("job_ids", metavar="JOB_ID...", nargs=-1, required=True, type=JOB_ID)
@click.pass_context
def command(ctx: click.Context, *, job_ids: tuple[int, ...]) -> int:
    """Remove finished jobs: their record and their output, now.

    Prints "Removed Job 'N'" for each. A running job is not removed ("Job 'N' is running:
    stop it first.", exit status 1); it takes the permission to stop the job. The server also
    removes finished jobs on its own after a while (docs/retention.md).
    """

    async def remove(stub: JobServiceStub, job_id: int) -> None:
        from jobservice.api.v1 import jobservice_pb2 as pb

        await stub.Remove(pb.RemoveRequest(job_id=job_id), timeout=RPC_TIMEOUT)

    def show(job_id: int, _: None) -> None:
        click.echo(removed_line(job_id))

    return for_each_job(settings_of(ctx), job_ids, remove, show, explain=_still_running)


def _still_running(error: CliError, job_id: int) -> CliError:
    """For rm, FAILED_PRECONDITION means the job still runs, not that it has ended."""
    if error.code is ExitCode.NOT_RUNNING:
        return CliError(still_running_line(job_id), ExitCode.NOT_RUNNING)
    return error
