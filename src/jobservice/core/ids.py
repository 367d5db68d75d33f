"""Job ids: sequential from 0, continuing after the logs on disk, never past 2^63 - 2.

Without a store the logs directory is the only record of past ids, and anything that can write
there (today a job, which runs as jobd's user) could plant names in it. So only files that look
like jobd's own logs count: a canonical decimal name, in range, a regular file that starts with
the log format's magic. (The coordinator creates each log with O_EXCL and passes over a taken
name, so a planted file can cost an id but never a start; and it checks each id fits first.)
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from jobservice.core.output_log import MAGIC

__all__ = ["MAX_JOB_ID", "first_free_id"]

# Ids travel as uint64 in the API and are stored, with the next id after them, as SQLite's
# signed 64-bit INTEGER: the largest id whose successor that holds.
MAX_JOB_ID = (1 << 63) - 2


def first_free_id(logs: Path) -> int:
    """The id after the highest of the logs jobd wrote in `logs` (0 if none)."""
    highest = -1
    for name in os.listdir(logs):
        job_id = _parse(name)
        if job_id is not None and job_id > highest and _is_our_log(logs / name):
            highest = job_id
    return highest + 1


def _parse(name: str) -> int | None:
    """The id in a log name jobd would write (`7.log`, not `07.log` nor `7.log.bak`), or None."""
    stem = name.removesuffix(".log")
    if stem == name or not (stem.isascii() and stem.isdigit()):
        return None
    job_id = int(stem)
    return job_id if str(job_id) == stem and job_id <= MAX_JOB_ID else None


def _is_our_log(path: Path) -> bool:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, len(MAGIC)) == MAGIC
        finally:
            os.close(fd)
    return False
