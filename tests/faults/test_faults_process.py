"""jobd's own process under stress: SIGTERM mid-stream, and too few file descriptors."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import signal
import socket
import time
from pathlib import Path

from grpclib.const import Status
from hostilehelp import fd_count, launch, session_processes, wait_until
from jobdhelp import (
    Connect,
    JobdLauncher,
    first_line_number,
    following,
    read_output,
    status_of,
)

from jobservice.api import ConnectError, JobServiceStub
from jobservice.api.server import ServerConfig
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.cli.jobd.serve import fds_needed

# What jobd keeps of the chatty job: the follower's reading after the SIGTERM is bounded by it,
# not by how long `yes` ran before (unbounded, it raced the drain deadline under load). Small
# next to what the stubborn job's stop grace gives the follower to read it before jobd closes
# its connection: a grpclib client loses what it has not read when the connection goes.
_CHATTY_KEPT = 1 << 20
_YES_LINE = b"job-output\n"


async def _follow_paused(
    stub: JobServiceStub, job_id: int, offset: int, accepted: asyncio.Event, go: asyncio.Event
) -> tuple[int, pb.JobStatus | None]:
    """Open a job's Output at `offset`, read nothing until `go`, then count it to its end.

    Every byte is checked, not kept: offsets are contiguous and the data is `yes` output.
    """
    received = 0
    final = None
    async with stub.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=job_id, offset=offset), end=True)
        await stream.recv_initial_metadata()
        accepted.set()
        await go.wait()
        async for response in stream:
            if response.HasField("chunk"):
                chunk = response.chunk
                assert chunk.offset == offset + received, "no gap, no repeat"
                phase = received % len(_YES_LINE)
                lines = _YES_LINE * (len(chunk.data) // len(_YES_LINE) + 2)
                assert chunk.data == lines[phase : phase + len(chunk.data)], "yes, unchanged"
                received += len(chunk.data)
            else:
                final = response.final_status
    return received, final


async def _until_truncated(stub: JobServiceStub, job_id: int) -> None:
    """Return once jobd holds all it keeps of a job's output (a state only polling observes)."""
    while not (await stub.Status(pb.StatusRequest(job_id=job_id))).status.output_truncated:
        await asyncio.sleep(0.05)


async def test_sigterm_mid_stream_ends_every_stream_and_leaves_no_process(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--stop-grace", "1", "--max-output-bytes", str(_CHATTY_KEPT))
    alice = await connect(server, "alice")
    scripts = {
        "chatty": "echo $$; exec yes job-output",  # writing flat out when the signal comes
        "tree": "echo $$; sleep 100 & (sleep 100 & wait) & wait",  # children and grandchildren
        "stubborn": "trap '' TERM; echo $$; while :; do sleep 0.1; done",  # needs SIGKILL
    }
    jobs = {
        name: (await alice.Start(pb.StartRequest(command="sh", args=["-c", script]))).job_id
        for name, script in scripts.items()
    }
    leaders = {name: await first_line_number(alice, job_id) for name, job_id in jobs.items()}
    assert all(session_processes(pid) for pid in leaders.values())
    # The chatty follower is live but reads nothing until the signal has gone, so its stream
    # is mid-way for certain: output sent and unread, `yes` still writing.
    after_pid = len(f"{leaders['chatty']}\n")
    accepted, go = asyncio.Event(), asyncio.Event()
    chatty = asyncio.create_task(_follow_paused(alice, jobs["chatty"], after_pid, accepted, go))
    await asyncio.wait_for(accepted.wait(), 30)
    followers = {
        name: await following(alice, job_id) for name, job_id in jobs.items() if name != "chatty"
    }
    await asyncio.wait_for(_until_truncated(alice, jobs["chatty"]), 60)
    server.process.send_signal(signal.SIGTERM)
    go.set()
    # Hang guards only: each ends on its own once jobd has stopped the jobs.
    outputs = {name: await asyncio.wait_for(task, 60) for name, task in followers.items()}
    received, chatty_final = await asyncio.wait_for(chatty, 60)
    assert await asyncio.to_thread(server.process.wait, 60) == 0
    assert received == _CHATTY_KEPT - after_pid, (
        "every byte jobd kept reaches the follower, then the end"
    )
    finals = {name: output.final for name, output in outputs.items()} | {"chatty": chatty_final}
    assert None not in finals.values(), "each stream ends with its job's final status"
    signals = {name: final.signal for name, final in finals.items() if final is not None}
    assert signals == {"chatty": signal.SIGTERM, "tree": signal.SIGTERM, "stubborn": signal.SIGKILL}
    for name, leader in leaders.items():  # a job leads its session: nothing of it is left
        assert await wait_until(lambda: not session_processes(leader), 5), (  # noqa: B023
            f"{name}: {session_processes(leader)} outlived jobd"
        )
    assert "Traceback" not in server.log


async def test_jobd_raises_a_low_soft_descriptor_limit_to_what_it_needs(
    jobd_launcher: JobdLauncher, tmp_path: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    server = launch(jobd_launcher, wrapper=("prlimit", f"--nofile=256:{hard}", "--"))
    limits = Path(f"/proc/{server.pid}/limits").read_text()
    soft = int(re.search(r"Max open files\s+(\d+)", limits).group(1))  # type: ignore[union-attr]
    needed = fds_needed(
        ServerConfig(host="", port=0, ca=tmp_path, cert=tmp_path, key=tmp_path, data_dir=tmp_path)
    )
    assert soft == min(needed, hard)  # as far as needed, not to the hard limit (jobs inherit it)
    assert ("file descriptor limit" in server.log) == (hard < needed)


async def test_running_out_of_descriptors_is_survived(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = launch(
        jobd_launcher, "--handshake-timeout", "1", wrapper=("prlimit", "--nofile=48:48", "--")
    )
    await server.logged(r"file descriptor limit 48 is below the \d+ the configured limits")
    alice = await connect(server, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="sleep", args=["30"]))).job_id
    host, port = server.target.rsplit(":", 1)
    flood = []
    try:
        for _ in range(100):  # TCP connections that never start TLS: jobd runs out of fds
            with contextlib.suppress(OSError):
                flood.append(socket.create_connection((host, int(port)), timeout=5))
        # Readiness: jobd has taken every descriptor its limit allows.
        assert await wait_until(lambda: fd_count(server.pid) >= 48, 10), fd_count(server.pid)
        # No descriptor for a new job's log, nor for a stream's reader: a clear answer, no crash.
        start = await status_of(alice.Start(pb.StartRequest(command="true")))
        output = await status_of(read_output(alice, job_id))
        assert start == (
            Status.UNAVAILABLE,
            "cannot create the job's output log: Too many open files",
        )
        assert output == (
            Status.UNAVAILABLE,
            "the server is short of resources: Too many open files",
        )
    finally:
        for sock in flood:
            sock.close()
    # Once the flood is gone (and the handshakes it started have timed out), all is well again.
    deadline = time.monotonic() + 15
    while True:
        try:
            stub = await connect(server, "alice")
            new_job = (await stub.Start(pb.StartRequest(command="echo", args=["back"]))).job_id
            break
        except (ConnectError, OSError):
            assert time.monotonic() < deadline, "jobd did not recover from the flood"
            await asyncio.sleep(0.2)
    assert (await read_output(stub, new_job)).data() == b"back\n"
    assert server.process.poll() is None
    assert "internal error" not in server.log
