"""`jobctl status`: one job's state, as `Job '42': Exited: 0` or `Job '77': Running`."""

from __future__ import annotations

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.params import JOB_ID
from jobservice.cli.jobctl.plain_status import job_status, show_status

__all__ = ["command", "job_status"]


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
    # main() runs the plain forms of this line without click (plain_status.py); the rest come here.
    return show_status(settings_of(ctx), job_id, as_json=as_json)
