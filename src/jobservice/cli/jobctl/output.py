"""`jobctl output`: a job's stdout bytes to stdout and stderr bytes to stderr, following it live."""

# Heavy modules (grpclib, protobuf, cryptography) are imported inside functions, so that
# `jobctl --help` and usage errors stay instant: see docs/cli.md "Cold start".
# ruff: noqa: PLC0415

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, BinaryIO

import click

from jobservice.cli.jobctl.config import settings_of
from jobservice.cli.jobctl.connect import call
from jobservice.cli.jobctl.exitcodes import CliError, ExitCode, from_exception
from jobservice.cli.jobctl.params import JOB_ID, JobIdCommand, stream_options

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub
    from jobservice.core.model import Chunk, JobInfo

__all__ = ["Sink", "command", "follow", "warn_if_truncated"]


class Sink:
    """Writes chunks unmodified to our stdout or stderr and remembers where to resume."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset  # combined-output offset just past the last byte written
        self._out: BinaryIO = sys.stdout.buffer
        self._err: BinaryIO = sys.stderr.buffer

    def write(self, chunk: Chunk) -> None:
        from jobservice.core.model import Stream

        target = self._err if chunk.stream is Stream.STDERR else self._out
        try:
            target.write(chunk.data)
            target.flush()  # live output, and stdout/stderr interleaved as the job wrote them
        except BrokenPipeError:
            # The reader left (`| head -1`): nothing more to say, and no traceback.
            raise CliError("", ExitCode.BROKEN_PIPE) from None
        self.offset = chunk.end


async def follow(
    stub: JobServiceStub, job_id: int, streams: str, sink: Sink, *, server: str
) -> JobInfo | None:
    """Copy the job's output from `sink.offset` until the job ends; return its final status."""
    from jobservice.api import chunk_from_proto, pb, status_to_info

    selection = pb.OutputSelection.Value(f"OUTPUT_SELECTION_{streams.upper()}")
    request = pb.OutputRequest(job_id=job_id, streams=selection, offset=sink.offset)
    final: JobInfo | None = None
    try:
        async with stub.Output.open() as call_stream:
            await call_stream.send_message(request, end=True)
            async for response in call_stream:
                if response.HasField("chunk"):
                    sink.write(chunk_from_proto(response.chunk))
                elif response.HasField("final_status"):
                    final = status_to_info(response.final_status)
    except CliError:
        raise
    except Exception as exc:
        raise _with_resume_hint(
            from_exception(exc, server=server, job=job_id), job_id, sink
        ) from exc
    return final


def _with_resume_hint(error: CliError, job_id: int, sink: Sink) -> CliError:
    if error.code is not ExitCode.CONNECTION or sink.offset == 0:
        return error
    hint = f" Resume with: jobctl output {job_id} --offset {sink.offset}"
    return CliError(error.message + hint, error.code)


def warn_if_truncated(job: JobInfo | None) -> None:
    if job is not None and job.output_truncated:
        click.echo(
            f"jobctl: Job '{job.id}' wrote more output than the server keeps; "
            "the rest was discarded.",
            err=True,
        )


@click.command("output", cls=JobIdCommand)
@click.argument("job_id", type=JOB_ID)
@stream_options
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Resume at this offset of the job's combined output.",
)
@click.pass_context
def command(ctx: click.Context, *, job_id: int, streams: str, offset: int) -> int:
    """Print a job's output; follow it live until the job ends.

    The job's stdout goes to stdout and its stderr to stderr, byte for byte. Interrupted? Every
    error about a lost connection says which --offset resumes it.

    \b
    Examples:
      jobctl output 42              # both streams, from the first byte
      jobctl output 42 --stderr 2>err.log
      jobctl output 42 | head -1
    """
    settings = settings_of(ctx)
    sink = Sink(offset)

    async def body(stub: JobServiceStub) -> JobInfo | None:
        return await follow(stub, job_id, streams, sink, server=settings.server)

    final = call(settings, body, job=job_id, streaming=True)
    warn_if_truncated(final)
    if final is not None and offset > final.output_bytes:
        click.echo(
            f"jobctl: --offset {offset} is past the end of Job '{job_id}''s output "
            f"({final.output_bytes} bytes): nothing to show.",
            err=True,
        )
    return 0
