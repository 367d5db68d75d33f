"""Retention with a real jobd: --retain, --user-quota, and `jobctl rm` with its permissions."""

from __future__ import annotations

from pathlib import Path

from grpclib.const import Status
from jobctl_support import Jobctl
from jobdhelp import Connect, JobdLauncher, read_output, status_of

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core.output_log import MAGIC

HEADER = 5  # bytes before each output record in a log


async def _finished(stub: JobServiceStub, size: int) -> int:
    request = pb.StartRequest(command="head", args=["-c", str(size), "/dev/zero"])
    job_id = (await stub.Start(request)).job_id
    output = await read_output(stub, job_id)
    assert len(output.data()) == size or (output.final and output.final.output_truncated)
    return job_id


async def _exists(stub: JobServiceStub, job_id: int) -> bool:
    status, _ = await status_of(stub.Status(pb.StatusRequest(job_id=job_id)))
    assert status in (Status.OK, Status.NOT_FOUND)
    return status is Status.OK


async def test_retain_removes_jobs_past_their_time_at_start_up(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    jobd = jobd_launcher.start()
    alice = await connect(jobd, "alice")
    ended = await _finished(alice, 10)
    running = (await alice.Start(pb.StartRequest(command="sleep", args=["1000"]))).job_id
    assert jobd.terminate() == 0  # stops `running` too
    jobd = jobd_launcher.start("--retain", "1d", data_dir=jobd.data_dir)
    alice = await connect(jobd, "alice")
    assert await _exists(alice, ended)
    assert jobd.terminate() == 0
    jobd = jobd_launcher.start("--retain", "0s", data_dir=jobd.data_dir)
    alice = await connect(jobd, "alice")
    assert not await _exists(alice, ended)
    assert not await _exists(alice, running)
    assert not (jobd.data_dir / "logs" / f"{ended}.log").exists()
    assert (await alice.Start(pb.StartRequest(command="true"))).job_id == running + 1


async def test_user_quota_removes_the_oldest_finished_jobs_of_that_user_only(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    quota = 2 * (len(MAGIC) + HEADER + 1000)
    jobd = jobd_launcher.start("--user-quota", str(quota))
    alice, charlie = await connect(jobd, "alice"), await connect(jobd, "charlie")
    first = await _finished(alice, 1000)
    others = await _finished(charlie, 1000)
    second = await _finished(alice, 1000)
    assert await _exists(alice, first)
    third = await _finished(alice, 1000)
    assert not await _exists(alice, first)
    assert await _exists(alice, second)
    assert await _exists(charlie, others)
    assert len((await read_output(alice, third)).data()) == 1000
    # Running alone past the quota: that job's own output is cut, marked truncated.
    big = await _finished(alice, 10 * quota)
    final = (await alice.Status(pb.StatusRequest(job_id=big))).status
    assert final.output_truncated
    assert final.output_bytes <= quota
    jobd.wait_for_log(rf"{big}\.log: the owner's output quota is reached")


async def test_jobctl_rm(jobd_launcher: JobdLauncher, pki: Path, tmp_path: Path) -> None:
    jobd = jobd_launcher.start("--stop-grace", "2")
    ctl = Jobctl(jobd.target, pki, tmp_path)
    done = ctl.start("echo", "hi")
    assert ctl("output", str(done)).stdout == "hi\n"
    theirs = ctl.start("true", user="charlie")
    assert ctl("output", str(theirs), user="charlie").code == 0
    running = ctl.start("sleep", "1000")

    refused = ctl("rm", str(done), user="bob")  # bob sees every job but may not stop any
    assert (refused.code, refused.stdout) == (4, "")
    assert "Permission denied" in refused.stderr
    hidden = ctl("rm", str(theirs))  # alice may not see charlie's job: as if it did not exist
    assert (hidden.code, hidden.stderr) == (3, f"Job '{theirs}' not found.\n")
    busy = ctl("rm", str(running))
    assert (busy.code, busy.stderr) == (1, f"Job '{running}' is running: stop it first.\n")
    assert (jobd.data_dir / "logs" / f"{done}.log").exists()

    both = ctl("rm", str(done), str(theirs), user="charlie")
    assert (both.code, both.stdout) == (0, f"Removed Job '{done}'\nRemoved Job '{theirs}'\n")
    assert ctl("status", str(done)).code == 3
    assert not (jobd.data_dir / "logs" / f"{done}.log").exists()
    assert ctl("stop", str(running)).code == 0
    assert ctl("rm", str(running)).code == 0

    jobd.terminate()
    jobd = jobd_launcher.start(data_dir=jobd.data_dir)
    ctl = Jobctl(jobd.target, pki, tmp_path)
    assert ctl("list").stdout.count("\n") == 1  # the header only: all three stay removed
    assert ctl.start("true") == running + 1  # and their ids are not given again
