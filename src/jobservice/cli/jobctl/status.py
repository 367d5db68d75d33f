"""`jobctl status`: one job's state, as `Job '42': Exited: 0` or `Job '77': Running`."""

# Modules that not every run needs (grpclib, protobuf, cryptography, json) are imported inside
# functions, so that help, usage errors and plain output stay fast: docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import RPC_TIMEOUT, call
from jobservice.cli.jobctl.params import JOB_ID
from jobservice.cli.jobctl.render import JobView, job_json, status_line

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["command", "job_status"]


async def job_status(stub: JobServiceStub, job_id: int) -> JobView:
    from jobservice.api.v1 import jobservice_pb2 as pb

    response = await stub.Status(pb.StatusRequest(job_id=job_id), timeout=RPC_TIMEOUT)
    return JobView.from_message(response.status)


@click.command("status")
@click.argument("job_id", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (docs/cli.md).")
@click.pass_context
def command(ctx: click.Context, *, job_id: int, as_json: bool) -> int:
    """Show a job's status.

    \b
    Job '42': Exited: 0
    Job '77': Running
    Job '77': Exited: 143 (SIGTERM)      # ended by signal 15: 128 + 15, as a shell says
    """
    settings = settings_of(ctx)

    async def body(stub: JobServiceStub) -> JobView:
        return await job_status(stub, job_id)

    job = call(settings, body, job=job_id)
    if as_json:
        import json

        click.echo(json.dumps(job_json(job)))
    else:
        click.echo(status_line(job))
    return 0
