"""The authorization matrix, against a real jobd: every user x every RPC x every kind of job.

Expected answers come from the design (original-design.md's table, architecture.md's rules),
written out here rather than derived from the code under test.
"""

from __future__ import annotations

import pytest
from grpclib.const import Status
from jobdhelp import Connect, Jobd, read_output, status_of

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb

OK = Status.OK
NOT_FOUND = Status.NOT_FOUND
DENIED = Status.PERMISSION_DENIED
MISSING_JOB = 10**9  # an id no test server reaches

# (caller, owner of the job) -> answer, for Status and Output (read access), and for Stop.
# Owner "missing" is a job id that does not exist. bob and mallory cannot own jobs.
READ = {
    ("alice", "alice"): OK,
    ("alice", "charlie"): NOT_FOUND,  # Self only: charlie's job does not exist for alice
    ("alice", "missing"): NOT_FOUND,
    ("bob", "alice"): OK,
    ("bob", "charlie"): OK,
    ("bob", "missing"): NOT_FOUND,
    ("charlie", "alice"): OK,
    ("charlie", "charlie"): OK,
    ("charlie", "missing"): NOT_FOUND,
    ("mallory", "alice"): DENIED,  # valid certificate, not in the policy: nothing at all
    ("mallory", "charlie"): DENIED,
    ("mallory", "missing"): DENIED,
}
STOP = {
    ("alice", "alice"): OK,
    ("alice", "charlie"): NOT_FOUND,
    ("alice", "missing"): NOT_FOUND,
    ("bob", "alice"): DENIED,  # an Analyst sees the job but may not stop it
    ("bob", "charlie"): DENIED,
    ("bob", "missing"): NOT_FOUND,
    ("charlie", "alice"): OK,
    ("charlie", "charlie"): OK,
    ("charlie", "missing"): NOT_FOUND,
    ("mallory", "alice"): DENIED,
    ("mallory", "charlie"): DENIED,
    ("mallory", "missing"): DENIED,
}
START = {"alice": OK, "bob": DENIED, "charlie": OK, "mallory": DENIED}
# Whose jobs List shows each caller (None: the call itself is denied).
LISTS = {"alice": {"alice"}, "bob": {"alice", "charlie"}, "charlie": {"alice", "charlie"}}


async def start_job(stub: JobServiceStub, *argv: str) -> int:
    response = await stub.Start(pb.StartRequest(command=argv[0], args=argv[1:]))
    return response.job_id


async def job_of(connect: Connect, server: Jobd, owner: str, *argv: str) -> int:
    if owner == "missing":
        return MISSING_JOB
    return await start_job(await connect(server, owner), *argv)


@pytest.mark.parametrize(("caller", "owner"), sorted(READ))
async def test_status(shared_jobd: Jobd, connect: Connect, caller: str, owner: str) -> None:
    job_id = await job_of(connect, shared_jobd, owner, "true")
    stub = await connect(shared_jobd, caller)
    status, _ = await status_of(stub.Status(pb.StatusRequest(job_id=job_id)))
    assert status is READ[caller, owner]


@pytest.mark.parametrize(("caller", "owner"), sorted(READ))
async def test_output(shared_jobd: Jobd, connect: Connect, caller: str, owner: str) -> None:
    job_id = await job_of(connect, shared_jobd, owner, "echo", "secret")
    stub = await connect(shared_jobd, caller)
    status, _ = await status_of(read_output(stub, job_id))
    assert status is READ[caller, owner]
    if status is OK:
        output = await read_output(stub, job_id)
        assert output.data() == b"secret\n"


@pytest.mark.parametrize(("caller", "owner"), sorted(STOP))
async def test_stop(shared_jobd: Jobd, connect: Connect, caller: str, owner: str) -> None:
    job_id = await job_of(connect, shared_jobd, owner, "sleep", "60")
    stub = await connect(shared_jobd, caller)
    status, _ = await status_of(stub.Stop(pb.StopRequest(job_id=job_id)))
    assert status is STOP[caller, owner]
    if owner != "missing":
        owner_stub = await connect(shared_jobd, owner)
        info = (await owner_stub.Status(pb.StatusRequest(job_id=job_id))).status
        stopped = info.state == pb.JOB_STATE_EXITED
        assert stopped == (status is OK), "only an allowed Stop may end the job"
        if not stopped:
            await owner_stub.Stop(pb.StopRequest(job_id=job_id))


@pytest.mark.parametrize("caller", sorted(START))
async def test_start_is_for_the_callers_self(
    shared_jobd: Jobd, connect: Connect, caller: str
) -> None:
    stub = await connect(shared_jobd, caller)
    status, _ = await status_of(stub.Start(pb.StartRequest(command="true")))
    assert status is START[caller]
    if status is OK:
        response = await stub.Start(pb.StartRequest(command="true"))
        assert response.status.owner == caller


@pytest.mark.parametrize("caller", ["alice", "bob", "charlie", "mallory"])
async def test_list_shows_only_visible_jobs(jobd: Jobd, connect: Connect, caller: str) -> None:
    for owner in ("alice", "charlie", "alice"):
        await job_of(connect, jobd, owner, "true")
    stub = await connect(jobd, caller)
    if caller not in LISTS:
        status, _ = await status_of(stub.List(pb.ListRequest()))
        assert status is DENIED
        return
    jobs = (await stub.List(pb.ListRequest())).jobs
    assert {job.owner for job in jobs} == LISTS[caller]
    expected = 2 if LISTS[caller] == {"alice"} else 3
    assert len(jobs) == expected
    assert [job.job_id for job in jobs] == sorted(job.job_id for job in jobs), "oldest first"


@pytest.mark.parametrize("rpc", ["Status", "Stop", "Output"])
async def test_hidden_job_answers_exactly_like_a_missing_one(
    shared_jobd: Jobd, connect: Connect, rpc: str
) -> None:
    """No existence oracle: running or exited, charlie's job and no job look the same to alice."""
    charlie = await connect(shared_jobd, "charlie")
    running = await start_job(charlie, "sleep", "60")
    exited = await start_job(charlie, "true")
    await read_output(charlie, exited)  # returns once the job has exited
    alice = await connect(shared_jobd, "alice")

    async def answer(job_id: int) -> tuple[Status, str]:
        status, message = await status_of(_call(alice, rpc, job_id))
        return status, message.replace(str(job_id), "<id>")

    missing = await answer(MISSING_JOB)
    assert missing == (NOT_FOUND, "job <id> not found")
    assert await answer(running) == missing
    assert await answer(exited) == missing
    await charlie.Stop(pb.StopRequest(job_id=running))


async def _call(stub: JobServiceStub, rpc: str, job_id: int) -> object:
    if rpc == "Status":
        return await stub.Status(pb.StatusRequest(job_id=job_id))
    if rpc == "Stop":
        return await stub.Stop(pb.StopRequest(job_id=job_id))
    return await read_output(stub, job_id)


async def test_unknown_user_gets_permission_denied_on_every_rpc(
    shared_jobd: Jobd, connect: Connect
) -> None:
    mallory = await connect(shared_jobd, "mallory")
    calls = [
        mallory.Start(pb.StartRequest(command="true")),
        mallory.Stop(pb.StopRequest(job_id=0)),
        mallory.Status(pb.StatusRequest(job_id=0)),
        mallory.List(pb.ListRequest()),
        read_output(mallory, 0),
    ]
    for call in calls:
        assert (await status_of(call))[0] is DENIED
