"""Every RPC's success and error paths, against a real jobd over mutual TLS."""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import time
from pathlib import Path

import pytest
from grpclib.const import Status
from jobdhelp import Connect, Jobd, JobdLauncher, read_output, status_of

from jobservice.api import JobServiceStub, convert
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import ExitStatus, Stream


async def start(stub: JobServiceStub, *argv: str, env: list[str] | None = None) -> int:
    response = await stub.Start(pb.StartRequest(command=argv[0], args=argv[1:], env=env))
    return response.job_id


async def test_start_returns_the_new_jobs_status(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    before = time.time()
    response = await alice.Start(pb.StartRequest(command="sleep", args=["30"], dir="/tmp"))
    status = response.status
    assert status.job_id == response.job_id
    assert (status.owner, status.command, list(status.args), status.dir) == (
        "alice",
        "sleep",
        ["30"],
        "/tmp",
    )
    assert status.state == pb.JOB_STATE_RUNNING
    assert not status.HasField("exit_code")
    assert not status.HasField("signal")
    assert not status.HasField("ended_at")
    assert before - 1 <= status.started_at.ToNanoseconds() / 1e9 <= time.time() + 1
    await alice.Stop(pb.StopRequest(job_id=response.job_id))


async def test_start_runs_with_exactly_the_given_environment(
    shared_jobd: Jobd, connect: Connect
) -> None:
    """Nothing of jobd's environment; only HOME added, as ssh does, when the request has none."""
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "env", env=["GREETING=hello world", "PATH=/usr/bin:/bin"])
    output = await read_output(alice, job_id)
    home = pwd.getpwuid(os.geteuid()).pw_dir  # jobd runs as this test's user
    assert output.data() == f"GREETING=hello world\nPATH=/usr/bin:/bin\nHOME={home}\n".encode()
    job_id = await start(alice, "env", env=["HOME=/elsewhere", "PATH=/bin"])
    assert (await read_output(alice, job_id)).data() == b"HOME=/elsewhere\nPATH=/bin\n"


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"command": ""}, "command must not be empty"),
        ({"command": "no-such-command-here"}, "command not found"),
        ({"command": "/etc/passwd"}, "cannot execute"),
        ({"command": "true", "dir": "/no/such/dir"}, "directory not found"),
        ({"command": "true", "dir": "relative"}, "absolute path"),
        ({"command": "true", "env": ["NOEQUALS"]}, "not NAME=VALUE"),
        ({"command": "echo", "args": ["a\0b"]}, "NUL"),
    ],
)
async def test_start_rejects_bad_requests(
    shared_jobd: Jobd, connect: Connect, request_fields: dict[str, object], message: str
) -> None:
    alice = await connect(shared_jobd, "alice")
    status, text = await status_of(alice.Start(pb.StartRequest(**request_fields)))  # type: ignore[arg-type]
    assert status is Status.INVALID_ARGUMENT
    assert message in text


async def test_start_over_the_per_user_limit_is_resource_exhausted(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-jobs-per-user", "1")
    alice, charlie = await connect(server, "alice"), await connect(server, "charlie")
    first = await start(alice, "sleep", "30")
    status, text = await status_of(alice.Start(pb.StartRequest(command="true")))
    assert status is Status.RESOURCE_EXHAUSTED
    assert "limit" in text
    await start(charlie, "true")  # the limit is per user
    await alice.Stop(pb.StopRequest(job_id=first))
    await start(alice, "true")  # a stopped job frees its place


async def test_stop_ends_a_running_job_with_sigterm(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "sleep", "30")
    status = (await alice.Stop(pb.StopRequest(job_id=job_id))).status
    assert status.state == pb.JOB_STATE_EXITED
    assert status.signal == signal.SIGTERM
    assert not status.HasField("exit_code")
    assert status.HasField("ended_at")


async def test_stop_kills_a_job_that_ignores_sigterm_after_the_grace(
    shared_jobd: Jobd, connect: Connect
) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "sh", "-c", "trap '' TERM; echo ready; sleep 30")
    await _wait_for_output(alice, job_id, b"ready")
    began = time.monotonic()
    status = (await alice.Stop(pb.StopRequest(job_id=job_id))).status
    assert status.signal == signal.SIGKILL
    assert time.monotonic() - began >= 1.5  # the server runs with --stop-grace 2


async def test_stop_completes_even_if_the_client_gives_up(
    shared_jobd: Jobd, connect: Connect
) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "sh", "-c", "trap '' TERM; echo ready; sleep 30")
    await _wait_for_output(alice, job_id, b"ready")
    with pytest.raises(asyncio.TimeoutError):  # grpclib's deadline: the call is cancelled
        await alice.Stop(pb.StopRequest(job_id=job_id), timeout=0.5)
    output = await asyncio.wait_for(read_output(alice, job_id), 10)
    assert output.final is not None
    assert output.final.signal == signal.SIGKILL  # the grace still ran out into SIGKILL


async def test_stop_errors(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "true")
    await read_output(alice, job_id)
    status, text = await status_of(alice.Stop(pb.StopRequest(job_id=job_id)))
    assert (status, text) == (Status.FAILED_PRECONDITION, f"job {job_id} is not running")
    status, text = await status_of(alice.Stop(pb.StopRequest(job_id=123456)))
    assert (status, text) == (Status.NOT_FOUND, "job 123456 not found")


async def test_status_reports_exit_code_and_signal(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    exited = await start(alice, "sh", "-c", "exit 3")
    killed = await start(alice, "sh", "-c", "kill -KILL $$")
    await read_output(alice, exited)
    await read_output(alice, killed)
    code = (await alice.Status(pb.StatusRequest(job_id=exited))).status
    assert (code.state, code.exit_code, code.HasField("signal")) == (pb.JOB_STATE_EXITED, 3, False)
    sig = (await alice.Status(pb.StatusRequest(job_id=killed))).status
    assert (sig.signal, sig.HasField("exit_code")) == (signal.SIGKILL, False)
    assert sig.ended_at.ToNanoseconds() >= sig.started_at.ToNanoseconds()


async def test_status_of_a_missing_job(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    status, text = await status_of(alice.Status(pb.StatusRequest(job_id=999999)))
    assert (status, text) == (Status.NOT_FOUND, "job 999999 not found")


async def test_list_is_oldest_first_and_complete(jobd: Jobd, connect: Connect) -> None:
    charlie = await connect(jobd, "charlie")
    assert list((await charlie.List(pb.ListRequest())).jobs) == []
    ids = [await start(charlie, "true") for _ in range(3)]
    jobs = (await charlie.List(pb.ListRequest())).jobs
    assert [job.job_id for job in jobs] == ids
    assert all(job.owner == "charlie" and job.command == "true" for job in jobs)


async def test_output_selects_streams_and_ends_with_the_final_status(
    shared_jobd: Jobd, connect: Connect
) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "sh", "-c", "echo out1; echo err1 >&2; echo out2; exit 7")
    both = await read_output(alice, job_id)  # UNSPECIFIED: both streams
    assert both.data(pb.STREAM_STDOUT) == b"out1\nout2\n"
    assert both.data(pb.STREAM_STDERR) == b"err1\n"
    assert both.final is not None
    assert (both.final.state, both.final.exit_code, both.final.output_bytes) == (
        pb.JOB_STATE_EXITED,
        7,
        len(b"out1\nerr1\nout2\n"),
    )
    stdout = await read_output(alice, job_id, pb.OUTPUT_SELECTION_STDOUT)
    assert stdout.data() == b"out1\nout2\n"
    assert {c.stream for c in stdout.chunks} == {pb.STREAM_STDOUT}
    stderr = await read_output(alice, job_id, pb.OUTPUT_SELECTION_STDERR)
    assert stderr.data() == b"err1\n"
    assert stderr.final == both.final


async def test_output_offsets_resume_anywhere(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "sh", "-c", "echo abcdef; echo ghij >&2; echo klmnop")
    full = await read_output(alice, job_id)
    combined = full.data()
    position = 0
    for chunk in full.chunks:  # offsets count the combined output
        assert chunk.offset == position
        position += len(chunk.data)
    for offset in (0, 3, 7, len(combined) - 1, len(combined), len(combined) + 10):
        resumed = await read_output(alice, job_id, offset=offset)
        assert resumed.data() == combined[offset:]
        assert resumed.final == full.final
        if resumed.chunks:
            assert resumed.chunks[0].offset == offset


async def test_output_follows_live_output(
    shared_jobd: Jobd, connect: Connect, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = f"echo first; while [ ! -e {go} ]; do sleep 0.02; done; echo second"
    alice = await connect(shared_jobd, "alice")
    job_id = await start(alice, "sh", "-c", script)
    async with alice.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        first = await asyncio.wait_for(stream.recv_message(), 10)
        assert first is not None
        assert first.chunk.data == b"first\n"
        go.touch()  # only now can the job write more: the stream must wait for it, live
        second = await asyncio.wait_for(stream.recv_message(), 10)
        assert second is not None
        assert second.chunk.data == b"second\n"
        last = await asyncio.wait_for(stream.recv_message(), 10)
        assert last is not None
        assert last.HasField("final_status")
        assert last.final_status.exit_code == 0
        assert await stream.recv_message() is None


async def test_output_errors(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    status, text = await status_of(read_output(alice, 424242))
    assert (status, text) == (Status.NOT_FOUND, "job 424242 not found")
    job_id = await start(alice, "true")
    bad_selection = read_output(alice, job_id, streams=9)  # type: ignore[arg-type]
    assert (await status_of(bad_selection))[0] is Status.INVALID_ARGUMENT


async def test_output_beyond_the_limit_is_truncated_keeping_the_start(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-output-bytes", "1000")
    alice = await connect(server, "alice")
    job_id = await start(alice, "sh", "-c", "yes 0123456789 | head -c 5000")
    output = await read_output(alice, job_id)
    assert output.data() == (b"0123456789\n" * 100)[:1000]
    assert output.final is not None
    assert output.final.output_truncated


async def _wait_for_output(stub: JobServiceStub, job_id: int, text: bytes) -> None:
    """Return once the job has written `text` (read live from its Output stream)."""
    seen = b""
    async with stub.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        while text not in seen:
            message = await asyncio.wait_for(stream.recv_message(), 10)
            assert message is not None
            seen += message.chunk.data
        await stream.cancel()


async def test_wire_statuses_and_chunks_convert_back_to_library_records(
    shared_jobd: Jobd, connect: Connect
) -> None:
    alice = await connect(shared_jobd, "alice")
    running = await start(alice, "sleep", "30")
    exited = await start(alice, "sh", "-c", "echo out; echo err >&2; exit 4")
    output = await read_output(alice, exited)
    await alice.Stop(pb.StopRequest(job_id=running))
    for job in (await alice.List(pb.ListRequest())).jobs:
        back = convert.info_to_proto(convert.status_to_info(job))
        for field in ("started_at", "ended_at"):  # float seconds in between: within 1 us
            assert back.HasField(field) == job.HasField(field)
            delta = getattr(back, field).ToNanoseconds() - getattr(job, field).ToNanoseconds()
            assert abs(delta) <= 1000
            back.ClearField(field)
            job.ClearField(field)
        assert back == job
    assert output.final is not None
    assert convert.status_to_info(output.final).exit == ExitStatus(code=4)
    chunks = [convert.chunk_from_proto(c) for c in output.chunks]
    assert [(c.stream, c.data) for c in chunks] == [
        (Stream.STDOUT, b"out\n"),
        (Stream.STDERR, b"err\n"),
    ]
    assert [c.offset for c in chunks] == [c.offset for c in output.chunks]
