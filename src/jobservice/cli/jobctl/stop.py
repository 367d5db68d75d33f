"""`jobctl stop`: stop a running job (SIGTERM to its group, then SIGKILL after a grace period)."""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.each import for_each_job
from jobservice.cli.jobctl.params import JOB_ID, JobIdCommand
from jobservice.cli.jobctl.render import stopped_line
from jobservice.core.model import JobInfo

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["command", "stop_job"]


async def stop_job(stub: JobServiceStub, job_id: int) -> JobInfo:
    """Stop the job; its final status, once it has exited (the server's grace period rules)."""
    from jobservice.api import pb, status_to_info

    response = await stub.Stop(pb.StopRequest(job_id=job_id))
    return status_to_info(response.status)


@click.command("stop", cls=JobIdCommand)
@click.argument("job_ids", nargs=-1, required=True, type=JOB_ID, metavar="JOB_ID...")
@click.pass_context
def command(ctx: click.Context, *, job_ids: tuple[int, ...]) -> int:
    """Stop a running job and wait until it has exited.

    Prints "Stopped Job 'N'", and says so when the job ignored SIGTERM and was killed. A job
    that already ended gives "Job 'N' is not running." and exit status 1. Several ids are
    stopped at once, a line each; the exit status is the first error's.
    """

    def show(job_id: int, job: JobInfo) -> None:
        click.echo(stopped_line(job_id, job))

    return for_each_job(settings_of(ctx), job_ids, stop_job, show, concurrently=True)
