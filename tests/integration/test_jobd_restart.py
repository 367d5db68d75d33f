"""Durable state with a real jobd: a graceful restart and a `kill -9` lose nothing.

Jobs that must not outlive a crashed jobd carry a unique marker in their argv; the tests find
them through /proc by it, and kill only processes they found so (never by name).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from jobctl_support import Jobctl
from jobdhelp import Connect, Jobd, JobdLauncher, read_output

from jobservice.api import status_to_info
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.cli.jobctl.render import status_line


def _restart(launcher: JobdLauncher, jobd: Jobd, *extra: str, crash: bool = False) -> Jobd:
    """Stop `jobd` (SIGTERM, or SIGKILL for `crash`) and start a new one on its data dir."""
    if crash:
        jobd.process.send_signal(signal.SIGKILL)
        jobd.process.wait()
    else:
        assert jobd.terminate() == 0
    return launcher.start("--stop-grace", "2", *extra, data_dir=jobd.data_dir)


async def test_200_finished_jobs_are_all_there_after_a_restart(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    jobd = jobd_launcher.start("--stop-grace", "2")
    alice, bob = await connect(jobd, "alice"), await connect(jobd, "charlie")
    script = 'printf "%s out\\n" "$1"; printf "%s err\\n" "$1" >&2; exit $(($1 % 7))'
    ids = []
    for i in range(200):
        stub = alice if i % 2 else bob
        request = pb.StartRequest(command="sh", args=["-c", script, "sh", str(i)], env=["A=1"])
        ids.append((await stub.Start(request)).job_id)
    before = {}
    for job_id in ids:
        output = await read_output(alice if job_id % 2 else bob, job_id)
        assert output.final is not None
        before[job_id] = (output.final, output.data())
    listed = (await bob.List(pb.ListRequest())).jobs

    jobd = _restart(jobd_launcher, jobd)
    bob = await connect(jobd, "charlie")
    assert list((await bob.List(pb.ListRequest())).jobs) == list(listed)
    for job_id, (final, data) in before.items():
        status = (await bob.Status(pb.StatusRequest(job_id=job_id))).status
        assert status == final
        assert status_line(status_to_info(status)) == status_line(status_to_info(final))
        again = await read_output(bob, job_id)
        assert again.data() == data
        assert again.final == final
    assert (await bob.Start(pb.StartRequest(command="true"))).job_id == max(ids) + 1


async def test_every_id_given_out_before_a_kill_9_exists_after_it(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    jobd = jobd_launcher.start("--stop-grace", "2", "--max-jobs-per-user", "0", "--max-jobs", "0")
    stubs = [await connect(jobd, user) for user in ("alice", "charlie") for _ in range(3)]
    given: list[int] = []
    enough = asyncio.Event()

    async def start(i: int) -> None:
        with contextlib.suppress(GRPCError, OSError, asyncio.CancelledError):
            response = await stubs[i % len(stubs)].Start(pb.StartRequest(command="true"))
            given.append(response.job_id)
            if len(given) >= 100:
                enough.set()

    tasks = [asyncio.create_task(start(i)) for i in range(300)]
    await asyncio.wait_for(enough.wait(), 60)
    jobd.process.send_signal(signal.SIGKILL)  # with about 200 starts still in flight
    await asyncio.gather(*tasks, return_exceptions=True)
    jobd.process.wait()

    jobd = jobd_launcher.start("--stop-grace", "2", data_dir=jobd.data_dir)
    stub = await connect(jobd, "charlie")
    for job_id in given:
        status = (await stub.Status(pb.StatusRequest(job_id=job_id))).status
        assert status.job_id == job_id
    listed = [job.job_id for job in (await stub.List(pb.ListRequest(page_size=1000))).jobs]
    assert set(given) <= set(listed)
    assert len(listed) == len(set(listed))
    new = (await stub.Start(pb.StartRequest(command="true"))).job_id
    assert new > max(listed)


def _marked(marker: str) -> list[int]:
    """Live (not zombie) processes whose argv holds `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in argv and state not in (b"Z", b"X"):
            found.append(int(name))
    return found


# auto: the jobs' cgroups are killed; off: their process groups (leader checked by its start
# time) and whatever holds their output pipes, which finds the setsid escapee.
@pytest.mark.parametrize("confine", ["auto", "off"])
async def test_jobs_running_at_a_kill_9_are_lost_and_leave_no_process(
    jobd_launcher: JobdLauncher, connect: Connect, pki: Path, tmp_path: Path, confine: str
) -> None:
    marker = f"i12-crash-{uuid.uuid4()}"
    escapee = (
        "import subprocess, sys, time\n"
        "subprocess.Popen(['setsid', sys.executable, '-c', 'import time; time.sleep(1000)',"
        f" {marker!r}])\n"
        "print('ready', flush=True)\n"
        "time.sleep(1000)\n"
    )
    plain = "import time; print('ready', flush=True); time.sleep(1000)"
    jobd = jobd_launcher.start("--stop-grace", "2", f"--confine={confine}")
    stub = await connect(jobd, "alice")
    ids = []
    try:
        for code in (escapee, plain):
            request = pb.StartRequest(command=sys.executable, args=["-c", code, marker])
            job_id = (await stub.Start(request)).job_id
            ids.append(job_id)
            await _read_until(stub, job_id, b"ready\n")
        assert len(_marked(marker)) == 3  # two jobs and the escapee
        ended = (await stub.Start(pb.StartRequest(command="true"))).job_id
        await read_output(stub, ended)

        jobd = _restart(jobd_launcher, jobd, f"--confine={confine}", crash=True)
        # jobd is ready only after it has killed the remains and seen them exit.
        assert _marked(marker) == []
        stub = await connect(jobd, "alice")
        for job_id in ids:
            status = (await stub.Status(pb.StatusRequest(job_id=job_id))).status
            assert status.state == pb.JOB_STATE_LOST
            assert status.lost_reason
            assert status.HasField("ended_at")
            output = await read_output(stub, job_id)
            assert output.data() == b"ready\n"  # what it wrote before the crash is served
            assert output.final == status
            with_stop = await _code_of(stub.Stop(pb.StopRequest(job_id=job_id)))
            assert with_stop is Status.FAILED_PRECONDITION
        ended_status = (await stub.Status(pb.StatusRequest(job_id=ended))).status
        assert ended_status.state == pb.JOB_STATE_EXITED
        ctl = Jobctl(jobd.target, pki, tmp_path)
        assert ctl("status", str(ids[0])).stdout == f"Job '{ids[0]}': Lost\n"
        assert '"state": "lost"' in ctl("status", "--json", str(ids[0])).stdout
    finally:
        for pid in _marked(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def _read_until(stub: object, job_id: int, wanted: bytes) -> None:
    """Follow the job's output until `wanted` has arrived (the job says it is ready)."""
    async with stub.Output.open() as stream:  # type: ignore[attr-defined]
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        seen = b""
        while wanted not in seen:
            message = await asyncio.wait_for(stream.recv_message(), 10)
            assert message is not None
            seen += message.chunk.data
        await stream.cancel()


async def _code_of(call: object) -> Status:
    try:
        await call  # type: ignore[misc]
    except GRPCError as exc:
        return exc.status
    return Status.OK
