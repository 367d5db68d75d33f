"""The audit log under a flood of refused calls: bounded per user, what was dropped counted."""

from __future__ import annotations

import asyncio
import re
import time

from grpclib.const import Status
from jobdhelp import Connect, Jobd, JobdLauncher, status_of

from jobservice.api.audit import REFUSED_BURST, REFUSED_RATE
from jobservice.api.v1 import jobservice_pb2 as pb

CALLS = 1500


def mallorys_lines(jobd: Jobd) -> tuple[int, int]:
    """(mallory's audit lines written, the calls reported dropped)."""
    log = jobd.log
    written = len(re.findall(r"audit user=mallory rpc=List ", log))
    dropped = sum(int(n) for n in re.findall(r"audit user=mallory dropped=(\d+) ", log))
    return written, dropped


async def test_a_flood_of_refused_calls_is_audited_in_bounded_lines(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start()
    mallory, alice = await connect(server, "mallory"), await connect(server, "alice")
    began = time.monotonic()
    for _ in range(CALLS // 50):  # mallory is in no policy: each call is refused at once
        answers = await asyncio.gather(
            *(status_of(mallory.List(pb.ListRequest())) for _ in range(50))
        )
        assert {status for status, _ in answers} == {Status.PERMISSION_DENIED}
    elapsed = time.monotonic() - began
    # Another user's refused call is audited all the same: the budgets are per user.
    assert (await status_of(alice.Status(pb.StatusRequest(job_id=999))))[0] is Status.NOT_FOUND
    server.wait_for_log(r"audit user=alice rpc=Status job=999 result=NOT_FOUND ")
    # Every call is accounted for: written, or counted in a report line.
    server.wait_for_log(r"audit user=mallory dropped=\d+ ")
    deadline = time.monotonic() + 10
    while sum(mallorys_lines(server)) < CALLS and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    written, dropped = mallorys_lines(server)
    print(f"{CALLS} refused calls in {elapsed:.1f} s: {written} lines written, {dropped} counted")
    assert written + dropped == CALLS
    assert written <= REFUSED_BURST + REFUSED_RATE * (elapsed + 1)
    assert dropped > 0
