"""Many Output streams at once: identical bytes for every subscriber, and the stream limit."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from grpclib.const import Status
from jobdhelp import Connect, Jobd, JobdLauncher, read_output, status_of

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb

STREAMS = 100
CONNECTIONS = 10  # 10 streams on each of 10 connections
OUTPUT_BYTES = 1 << 20


async def test_100_concurrent_streams_receive_identical_bytes(
    jobd: Jobd, connect: Connect, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    # The job writes half its output, waits until every stream is open, then writes the rest:
    # each stream gets a backlog from the log and then live output.
    half = OUTPUT_BYTES // 2
    script = (
        f"head -c {half} /dev/urandom; while [ ! -e {go} ]; do sleep 0.02; done; "
        f"head -c {half} /dev/urandom; echo done >&2"
    )
    alice = await connect(jobd, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="sh", args=["-c", script]))).job_id
    stubs = [await connect(jobd, "alice") for _ in range(CONNECTIONS)]
    opened = asyncio.Semaphore(0)

    async def follow(stub: JobServiceStub) -> tuple[str, pb.JobStatus | None, int]:
        digest, final, count = hashlib.sha256(), None, 0
        async with stub.Output.open() as stream:
            await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
            opened.release()
            async for message in stream:
                if message.HasField("chunk"):
                    assert message.chunk.offset == count
                    digest.update(message.chunk.data)
                    count += len(message.chunk.data)
                else:
                    final = message.final_status
        return digest.hexdigest(), final, count

    tasks = [asyncio.create_task(follow(stubs[i % CONNECTIONS])) for i in range(STREAMS)]
    for _ in range(STREAMS):
        await asyncio.wait_for(opened.acquire(), 30)
    go.touch()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 60)

    reference = await read_output(alice, job_id)
    expected = hashlib.sha256(reference.data()).hexdigest()
    assert len(reference.data()) == OUTPUT_BYTES + len(b"done\n")
    assert {digest for digest, _, _ in results} == {expected}
    assert {count for _, _, count in results} == {OUTPUT_BYTES + 5}
    assert all(final == reference.final for _, final, _ in results)
    assert reference.final is not None
    assert reference.final.exit_code == 0


async def test_streams_over_the_limit_are_resource_exhausted(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-streams", "2")
    alice = await connect(server, "alice")
    job_id = (await alice.Start(pb.StartRequest(command="sleep", args=["30"]))).job_id
    held = [alice.Output.open() for _ in range(2)]
    for stream in held:
        await stream.__aenter__()
        await stream.send_message(pb.OutputRequest(job_id=job_id), end=True)
        await asyncio.wait_for(stream.recv_initial_metadata(), 10)  # accepted and counted
    status, text = await status_of(read_output(alice, job_id))
    assert status is Status.RESOURCE_EXHAUSTED
    assert "limit 2" in text
    await alice.Stop(pb.StopRequest(job_id=job_id))
    for stream in held:  # both end normally with the final status once the job is stopped
        messages = [message async for message in stream]
        assert messages[-1].final_status.signal == 15
        await stream.__aexit__(None, None, None)
    assert (await read_output(alice, job_id)).final is not None  # slots are freed
