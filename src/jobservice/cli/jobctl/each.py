"""Verbs over several job ids (`stop 3 4 5`, `status 3 4`): one connection, a line per job.

As kubectl does for several names: every job gets its answer, a job's error is that job's line
on stderr and does not stop the others, and the exit status is the first failure's (0 if none).
A connection failure still ends the whole command.
"""

# ruff: noqa: PLC0415 (grpclib only once connected)

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from jobservice.cli.jobctl.config import Settings
from jobservice.cli.jobctl.connect import call
from jobservice.cli.jobctl.exitcodes import CliError, from_exception
from jobservice.cli.jobctl.outcome import echo_error

if TYPE_CHECKING:
    from jobservice.api.v1.jobservice_grpc import JobServiceStub

__all__ = ["for_each_job"]

T = TypeVar("T")


def for_each_job(
    settings: Settings,
    job_ids: Sequence[int],
    body: Callable[[JobServiceStub, int], Awaitable[T]],
    show: Callable[[int, T], None],
    *,
    concurrently: bool = False,
    explain: Callable[[CliError, int], CliError] | None = None,
) -> int:
    """`body` for each id (all at once if `concurrently`); `show` each answer in id order.

    `explain` may reword a job's error for the verb (rm: FAILED_PRECONDITION means "running").
    """

    async def each(stub: JobServiceStub) -> list[T | CliError]:
        from grpclib.exceptions import GRPCError

        async def one(job_id: int) -> T | CliError:
            try:
                return await body(stub, job_id)
            except GRPCError as exc:  # this job's answer; the connection is still fine
                error = from_exception(exc, server=settings.server, job=job_id)
                return explain(error, job_id) if explain is not None else error

        if concurrently:
            return list(await asyncio.gather(*(one(job_id) for job_id in job_ids)))
        return [await one(job_id) for job_id in job_ids]

    code = 0
    for job_id, answer in zip(job_ids, call(settings, each), strict=True):
        if isinstance(answer, CliError):
            echo_error(answer.message)
            code = code or int(answer.code)
        else:
            show(job_id, answer)
    return code
