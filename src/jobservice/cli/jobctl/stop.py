"""`jobctl stop`: stop a running job (SIGTERM to its group, then SIGKILL after a grace period)."""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import call
from jobservice.cli.jobctl.params import JOB_ID
from jobservice.cli.jobctl.render import stopped_line

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["command", "stop_job"]


async def stop_job(stub: JobServiceStub, job_id: int) -> None:
    """Stop the job; returns once it has exited (no timeout: the server's grace period rules)."""
    from jobservice.api.v1 import jobservice_pb2 as pb

    await stub.Stop(pb.StopRequest(job_id=job_id))


@click.command("stop")
@click.argument("job_id", type=JOB_ID)
@click.pass_context
def command(ctx: click.Context, *, job_id: int) -> int:
    """Stop a running job and wait until it has exited.

    Prints "Stopped Job 'N'". A job that already ended gives "Job 'N' is not running." and
    exit status 1.
    """
    settings = settings_of(ctx)

    async def body(stub: JobServiceStub) -> None:
        await stop_job(stub, job_id)

    call(settings, body, job=job_id)
    click.echo(stopped_line(job_id))
    return 0
