"""`jobctl status`: jobs' states, as `Job '42': Exited: 0` or `Job '77': Running`."""

from __future__ import annotations

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.each import for_each_job
from jobservice.cli.jobctl.params import JOB_ID, JobIdCommand
from jobservice.cli.jobctl.plain_status import job_status, show_status
from jobservice.cli.jobctl.render import details, job_json, status_line
from jobservice.core.model import JobInfo

__all__ = ["command", "job_status"]


@click.command("status", cls=JobIdCommand)
@click.argument("job_ids", nargs=-1, required=True, type=JOB_ID, metavar="JOB_ID...")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON (docs/cli.md).")
@click.option(
    "-v", "--verbose", is_flag=True, help="Also owner, command, directory, times and output size."
)
@click.pass_context
def command(ctx: click.Context, *, job_ids: tuple[int, ...], as_json: bool, verbose: bool) -> int:
    """Show a job's status.

    \b
    Job '42': Exited: 0
    Job '77': Running
    Job '77': Exited: 143 (SIGTERM)      # ended by signal 15: 128 + 15, as a shell says

    Several ids: a line each (a JSON array with --json); an error for one job is its own line
    on stderr, and the exit status is the first error's.
    """
    if len(job_ids) == 1 and not verbose:
        # main() runs the plain forms of this line without click (plain_status.py).
        return show_status(settings_of(ctx), job_ids[0], as_json=as_json)
    shown: list[JobInfo] = []

    def show(job_id: int, job: JobInfo) -> None:
        if as_json:
            shown.append(job)
        else:
            click.echo(status_line(job))
            if verbose:
                click.echo(details(job))

    code = for_each_job(settings_of(ctx), job_ids, job_status, show)
    if as_json and (shown or len(job_ids) > 1):
        import json  # noqa: PLC0415 (only for --json)

        objects = [job_json(job) for job in shown]
        click.echo(json.dumps(objects if len(job_ids) > 1 else objects[0]))
    return code
