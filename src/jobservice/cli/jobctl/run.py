"""`jobctl run`: start a job, follow its output, and exit with the job's own exit status."""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING, Any

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import call
from jobservice.cli.jobctl.exitcodes import CliError, ExitCode
from jobservice.cli.jobctl.output import Sink, follow, warn_if_truncated
from jobservice.cli.jobctl.params import (
    env_dir_options,
    limit_options,
    limits_of,
    stream_options,
)
from jobservice.cli.jobctl.plain_status import job_status
from jobservice.cli.jobctl.start import StartArgs, start_job
from jobservice.cli.jobctl.stdin import forward_stdin, warn_if_dropped
from jobservice.cli.jobctl.stop import stop_job

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub
    from jobservice.core.model import JobInfo

__all__ = ["command"]

# Signals that, as for a local command, end the job too: the remote job is stopped first.
# SIGHUP is the terminal closing: as ssh's remote command, the job dies with the session.
_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")


def _notice(text: str) -> None:
    """A line on stderr that may find no reader (a closed terminal): never fails."""
    import sys

    try:
        # On a terminal, after the "^C" it echoed or a job's unfinished line: a line of its own.
        start = "\n" if sys.stderr.isatty() else ""
        click.echo(f"{start}jobctl: {text}", err=True)
    except OSError:
        pass


async def _stop_after_interrupt(stub: JobServiceStub, job_id: int, signum: int | None) -> None:
    """Stop the job after signal `signum`, or quietly (None) after our reader left."""
    import signal

    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    if signum is not None:
        why: dict[int, str] = {signal.SIGHUP: "terminal closed", signal.SIGTERM: "terminated"}
        _notice(f"{why.get(signum, 'interrupted')}, stopping Job '{job_id}'")
    try:
        await stop_job(stub, job_id)
    except GRPCError as exc:
        if exc.status is not Status.FAILED_PRECONDITION:  # else it ended by itself meanwhile
            raise


class _Interrupts:
    """SIGINT/SIGTERM/SIGHUP in `run`: remember the first and cancel the follow, if it has begun.

    Installed before the job starts, so a Ctrl-C that lands while it is starting still stops
    it; removed before the job is stopped, so a second Ctrl-C ends jobctl at once.
    """

    def __init__(self) -> None:
        import asyncio
        import signal

        self._loop = asyncio.get_running_loop()
        # A signal jobctl inherited as ignored (a background job of a script) stays ignored,
        # as it would for a local command.
        wanted = [signal.Signals[name] for name in _FORWARDED]
        self._signals = [s for s in wanted if signal.getsignal(s) is not signal.SIG_IGN]
        self.caught: int | None = None
        self.task: asyncio.Future[JobInfo | None] | None = None

    def __enter__(self) -> _Interrupts:
        for signum in self._signals:
            self._loop.add_signal_handler(signum, self._on_signal, signum)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum in self._signals:
            self._loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        if self.caught is None:
            self.caught = signum
        if self.task is not None:
            self.task.cancel()


async def _run(stub: JobServiceStub, spec: StartArgs, streams: str, server: str) -> int:

    final: JobInfo | None = None
    feeding: asyncio.Future[None] | None = None
    with _Interrupts() as interrupts:
        job = await start_job(stub, spec)
        if spec.stdin:
            feeding = asyncio.ensure_future(forward_stdin(stub, job.id))
        if interrupts.caught is None:
            interrupts.task = asyncio.ensure_future(
                follow(stub, job.id, streams, Sink(), server=server)
            )
            try:
                final = await interrupts.task
            except asyncio.CancelledError:
                if interrupts.caught is None:
                    raise
            except CliError as exc:
                if exc.code is not ExitCode.BROKEN_PIPE:
                    raise
                # Our reader left (`| head -1`): as a local command would, the job ends too.
                await _stop_after_interrupt(stub, job.id, None)
                raise
        if feeding is not None:
            await _stop_feeding(feeding)
    if interrupts.caught is not None:
        await _stop_after_interrupt(stub, job.id, interrupts.caught)
        return 128 + interrupts.caught
    return await _exit_status(stub, job.id, final)


async def _stop_feeding(feeding: asyncio.Future[None]) -> None:
    """The job has ended (or we stop it): what is left of our stdin has nowhere to go."""
    from grpclib.exceptions import GRPCError

    feeding.cancel()
    # Cancelled here, or refused: the job's stdin was closed (it ended, or closed it itself).
    with contextlib.suppress(asyncio.CancelledError, GRPCError):
        await feeding


async def _exit_status(stub: JobServiceStub, job_id: int, final: JobInfo | None) -> int:
    if final is None:  # the stream always ends with the final status; be safe if it did not
        final = await job_status(stub, job_id)
    warn_if_truncated(final)
    return 0 if final.exit is None else final.exit.shell_code


@click.command("run", context_settings={"allow_interspersed_args": False})
@stream_options
@env_dir_options
@limit_options
@click.option(
    "-i",
    "--stdin",
    "forward",
    is_flag=True,
    help="Forward jobctl's stdin to the job's (end-of-file closes it), as ssh does.",
)
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD ARG...")
@click.pass_context
def command(
    ctx: click.Context,
    /,
    *,
    streams: str,
    envs: tuple[str, ...],
    directory: str,
    forward: bool,
    argv: tuple[str, ...],
    **limits: Any,
) -> int:
    """Start a job, stream its output, and exit with the job's exit status.

    Exits as a shell would for the job: its exit code, or 128+N when signal N ended it.
    Ctrl-C stops the job on the server, then exits 130. Errors before the job starts use
    jobctl's exit codes (see `jobctl --help`).

    \b
    Examples:
      jobctl run -- sh -c 'exit 3'; echo $?         # 3
      jobctl run --dir . --envs PATH=/usr/bin:/bin -- make test
      jobctl run --memory 1G --timeout 10m -- make test
      echo hello | jobctl run -i -- tr a-z A-Z        # HELLO
    """
    spec = dataclasses.replace(
        StartArgs.build(None, (), envs, directory, argv, limits=limits_of(limits)), stdin=forward
    )
    settings = settings_of(ctx)
    if not forward:
        warn_if_dropped()

    async def body(stub: JobServiceStub) -> int:
        return await _run(stub, spec, streams, settings.server)

    return call(settings, body, streaming=True)
