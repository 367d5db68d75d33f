"""List, a page at a time: a bounded number of jobs and bytes per response, resumed by a token.

The token is the id of the last job on the page, as text: ids are sequential and the caller has
just seen that one, so it tells nothing new; jobs started since are listed on later pages.
"""

from __future__ import annotations

from collections.abc import Iterable

from jobservice.api import convert
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import InvalidRequest, JobInfo
from jobservice.core.ids import MAX_JOB_ID

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_BYTES", "MAX_PAGE_SIZE", "list_page", "page_start"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A page ends before its jobs pass this size (but holds at least one job, whatever its size).
MAX_PAGE_BYTES = 1 << 20


def page_start(token: str) -> int:
    """The id after which the page starts (-1 for the first page). Raises InvalidRequest."""
    if not token:
        return -1
    if token.isascii() and token.isdigit() and str(int(token)) == token:
        job_id = int(token)
        if job_id <= MAX_JOB_ID:
            return job_id
    raise InvalidRequest("invalid page_token: pass one from a previous List response")


def list_page(jobs: Iterable[JobInfo], page_size: int) -> pb.ListResponse:
    """The first page of `jobs` (oldest first), with the token for the next when more follow."""
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    response = pb.ListResponse()
    page_bytes = 0
    for info in jobs:
        status = convert.info_to_proto(info)
        status_bytes = status.ByteSize()
        if response.jobs and (
            len(response.jobs) >= size or page_bytes + status_bytes > MAX_PAGE_BYTES
        ):
            response.next_page_token = str(response.jobs[-1].job_id)
            break
        response.jobs.append(status)
        page_bytes += status_bytes
    return response
