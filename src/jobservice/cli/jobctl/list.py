"""`jobctl list`: every job the caller may see, oldest first."""

# Modules that not every run needs (grpclib, protobuf, cryptography, json) are imported inside
# functions, so that help, usage errors and plain output stay fast: docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import RPC_TIMEOUT, call
from jobservice.cli.jobctl.render import job_json, list_table

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub
    from jobservice.core.model import JobInfo

__all__ = ["command", "list_jobs"]

_PAGE_SIZE = 1000  # the server's largest


async def list_jobs(stub: JobServiceStub) -> list[JobInfo]:
    from jobservice.api import pb, status_to_info

    jobs: list[JobInfo] = []
    token = ""
    while True:  # every page, each within the per-call timeout
        request = pb.ListRequest(page_size=_PAGE_SIZE, page_token=token)
        response = await stub.List(request, timeout=RPC_TIMEOUT)
        jobs.extend(status_to_info(job) for job in response.jobs)
        token = response.next_page_token
        if not token:
            return jobs


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of jobs (docs/cli.md).")
@click.pass_context
def command(ctx: click.Context, *, as_json: bool) -> int:
    """List the jobs you may see: id, owner, state, exit, started, command.

    Your own jobs, or everyone's if your role covers All.
    """
    jobs = call(settings_of(ctx), list_jobs)
    if as_json:
        import json

        click.echo(json.dumps([job_json(job) for job in jobs]))
    else:
        click.echo(list_table(jobs))
    return 0
