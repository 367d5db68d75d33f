"""stdin: dropped with a word without -i; forwarded with -i (bytes exact, EOF, authorization)."""

from __future__ import annotations

import hashlib
import shlex
import subprocess
from pathlib import Path

import pytest
from grpclib.const import Status
from jobctl_support import JOBCTL, Jobctl, Server
from jobdhelp import Connect, Jobd, feed_stdin, read_output

from jobservice.api.v1 import jobservice_pb2 as pb


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def _piped(
    ctl: Jobctl, shell: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """A shell line with `jobctl` in it, as a user types it."""
    line = shell.replace("jobctl ", f"{shlex.quote(str(JOBCTL))} ")
    return subprocess.run(
        ["bash", "-c", line], input=stdin, capture_output=True, env=ctl.env(), timeout=60,
        check=False,
    )  # fmt: skip


_DROPPED = b"jobctl: stdin is not passed to the job (its stdin is /dev/null); use `jobctl run -i`"


def test_piped_input_without_i_is_not_dropped_silently(ctl: Jobctl) -> None:
    dropped = _piped(ctl, "echo piped | jobctl run -- cat")
    assert (dropped.returncode, dropped.stdout) == (0, b"")
    assert dropped.stderr.startswith(_DROPPED), dropped.stderr
    for quiet in ("jobctl run -- cat </dev/null", "true | jobctl run -- cat"):
        result = _piped(ctl, quiet)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b""), quiet


def test_i_forwards_stdin_byte_for_byte(ctl: Jobctl) -> None:
    assert _piped(ctl, "echo piped | jobctl run -i -- cat").stdout == b"piped\n"
    data = bytes(range(256)) * 12288  # 3 MiB of every byte value
    summed = _piped(ctl, "jobctl run --stdin -- sha256sum", stdin=data)
    assert summed.returncode == 0, summed
    assert summed.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert summed.stderr == b""


def test_a_job_that_stops_reading_ends_run(ctl: Jobctl) -> None:
    # `head` reads five bytes and exits; `yes` would write forever.
    result = _piped(ctl, "yes | jobctl run -i -- head -c 5")
    assert (result.returncode, result.stdout) == (0, b"y\ny\ny"), result


async def test_who_may_write_a_jobs_stdin(shared_jobd: Jobd, connect: Connect) -> None:
    alice, charlie = await connect(shared_jobd, "alice"), await connect(shared_jobd, "charlie")
    bob, mallory = await connect(shared_jobd, "bob"), await connect(shared_jobd, "mallory")
    request = pb.StartRequest(command="cat", stdin=True)
    alices = (await alice.Start(request)).job_id
    charlies = (await charlie.Start(request)).job_id
    assert await feed_stdin(bob, alices, b"x") == (Status.PERMISSION_DENIED, 0)  # analyst
    assert await feed_stdin(mallory, alices, b"x") == (Status.PERMISSION_DENIED, 0)  # no role
    assert await feed_stdin(alice, charlies, b"x") == (Status.NOT_FOUND, 0)  # not hers to see
    assert await feed_stdin(charlie, alices, b"from charlie\n") == (Status.OK, 13)  # all/manager
    assert (await read_output(alice, alices)).data() == b"from charlie\n"  # EOF ended cat
    assert await feed_stdin(alice, alices, b"x") == (Status.FAILED_PRECONDITION, 0)  # closed
    assert await feed_stdin(charlie, charlies, b"") == (Status.OK, 0)
    without = (await alice.Start(pb.StartRequest(command="sleep", args=["1000"]))).job_id
    assert await feed_stdin(alice, without, b"x") == (Status.FAILED_PRECONDITION, 0)
    await alice.Stop(pb.StopRequest(job_id=without))


async def test_one_writer_at_a_time(shared_jobd: Jobd, connect: Connect) -> None:
    alice = await connect(shared_jobd, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="cat", stdin=True))).job_id
    async with alice.WriteStdin.open() as first:
        await first.send_message(pb.StdinChunk(job_id=job_id, data=b"one\n"))
        # The first call is in (its data reached cat) before the second one tries.
        async with alice.Output.open() as output:
            await output.send_message(pb.OutputRequest(job_id=job_id), end=True)
            reply = await output.recv_message()
            assert reply is not None
            assert reply.chunk.data == b"one\n"
            await output.cancel()
        assert await feed_stdin(alice, job_id, b"two\n") == (Status.FAILED_PRECONDITION, 0)
        await first.send_message(pb.StdinChunk(data=b"three\n"), end=True)
        assert (await first.recv_message()) == pb.WriteStdinResponse(bytes_written=10)
    assert (await read_output(alice, job_id)).data() == b"one\nthree\n"
