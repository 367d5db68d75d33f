"""Resuming a job's output at an offset through a front: byte-exact, without a replay from the
job's first message (one nats-server, two agents, two fronts, all real processes)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from clusterhelp import Cluster
from jobdhelp import Connect, following, read_output
from nats.aio.client import Client
from test_cluster_rpcs import WRITER, expected, writer

from jobservice.api import JobServiceStub
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.cluster import layout
from jobservice.cluster.connect import NatsSettings
from jobservice.cluster.connect import connect as connect_nats
from jobservice.cluster.follow import Follower, start_sequence
from jobservice.cluster.publisher import HEADER_OFFSET, HEADER_RESENT, HEADER_STREAM
from jobservice.core.model import Stream

_DEADLINE = 60.0


async def _nats(cluster: Cluster, pki: Path, cert: Path, inbox: str) -> Client:
    """A connection with `cert`, taking its replies under `inbox` (its role's own prefix)."""
    settings = NatsSettings(
        (cluster.servers[0].url,), pki / "ca.pem", cert, cert.with_suffix(".key"), replicas=1
    )
    return await connect_nats(settings, "a test", inbox)


@pytest.fixture
async def front_nats(one_server: Cluster, cluster_pki: Path) -> AsyncIterator[Client]:
    nc = await _nats(
        one_server, cluster_pki, cluster_pki / "fronts" / "f1.pem", layout.front_inbox()
    )
    yield nc
    await nc.close()


async def _output_bytes_reach(stub: JobServiceStub, job_id: int, size: int) -> None:
    """Until the job's record shows `size` output bytes (agents update it about every second)."""
    deadline = time.monotonic() + _DEADLINE
    while (await stub.Status(pb.StatusRequest(job_id=job_id))).status.output_bytes < size:
        assert time.monotonic() < deadline, f"job {job_id} did not write {size} bytes"
        await asyncio.sleep(0.1)


async def test_resume_a_finished_job_at_any_offset(one_server: Cluster, connect: Connect) -> None:
    f1, f2 = one_server.fronts
    alice1, alice2 = await connect(f1, "alice"), await connect(f2, "alice")
    started = await alice1.Start(writer(96))
    whole = await read_output(alice1, started.job_id)
    out, err = expected(96)
    data = whole.data()
    assert len(data) == len(out) + len(err)
    ends = [c.offset + len(c.data) for c in whole.chunks]
    boundary = ends[len(ends) // 2]
    cases = {
        "start": 0,
        "mid-chunk": boundary + 1000,
        "chunk boundary": boundary,
        "last chunk": ends[-2] + 3,
        "end": len(data),
        "past the end": len(data) + 12345,
    }
    for name, offset in cases.items():
        rest = await read_output(alice2, started.job_id, offset=offset)
        assert rest.data() == data[offset:], name
        if offset < len(data):
            assert rest.chunks[0].offset == offset, name
            chunk_ends = [c.offset + len(c.data) for c in rest.chunks]
            assert [c.offset for c in rest.chunks][1:] == chunk_ends[:-1], name
        assert rest.final is not None, name
        assert rest.final.exit_code == 0, name
        # Each stream keeps its own order: the selection of one stream from the offset.
        only_err = await read_output(
            alice2, started.job_id, streams=pb.OUTPUT_SELECTION_STDERR, offset=offset
        )
        assert only_err.data() == b"".join(
            c.data[max(0, offset - c.offset) :]
            for c in whole.chunks
            if c.stream == pb.STREAM_STDERR and c.offset + len(c.data) > offset
        ), name


async def test_resume_a_running_job(one_server: Cluster, connect: Connect, tmp_path: Path) -> None:
    alice = await connect(one_server.fronts[1], "alice")
    flag = tmp_path / "go"
    script = f'"$0" -c "$1" 24; while [ ! -e {flag} ]; do sleep 0.05; done; "$0" -c "$1" 12'
    started = await alice.Start(
        pb.StartRequest(command="sh", args=["-c", script, sys.executable, WRITER])
    )
    first_out, first_err = expected(24)
    first = len(first_out) + len(first_err)
    await _output_bytes_reach(alice, started.job_id, first)
    offsets = {"start": 0, "mid": first // 2 + 5, "end": first, "past the end": first + 70_000}
    followers = {
        name: await following(alice, started.job_id, offset=offset)
        for name, offset in offsets.items()
    }
    flag.touch()
    whole = await followers["start"]
    later_out, later_err = expected(12)
    assert len(whole.data()) == first + len(later_out) + len(later_err)
    for name, offset in offsets.items():
        rest = await followers[name]
        assert rest.data() == whole.data()[offset:], name
        if rest.chunks:
            assert rest.chunks[0].offset == offset, name
        assert rest.final is not None, name
        assert rest.final.exit_code == 0, name


async def test_resuming_starts_at_the_chunk_that_holds_the_offset(
    one_server: Cluster, connect: Connect, front_nats: Client
) -> None:
    alice = await connect(one_server.fronts[0], "alice")
    started = await alice.Start(writer(64))
    whole = await read_output(alice, started.job_id)
    js = front_nats.jetstream()
    subject = layout.output_subject(started.job_id)
    first = await js.get_msg(layout.OUTPUT_STREAM, seq=1, subject=subject, next=True)
    for chunk in whole.chunks[1::7]:
        for offset in (chunk.offset, chunk.offset + len(chunk.data) // 2):
            seq = await start_sequence(js, started.job_id, offset)
            assert seq is not None
            assert seq > (first.seq or 0)
            msg = await js.get_msg(layout.OUTPUT_STREAM, seq=seq)
            assert msg.subject == subject
            assert int((msg.headers or {})[HEADER_OFFSET]) == chunk.offset
    assert await start_sequence(js, started.job_id, 0) is None
    follower = Follower(front_nats, started.job_id, Stream.BOTH, whole.chunks[-1].offset)
    async with follower:
        got = [chunk async for chunk in follower]
    assert b"".join(c.data for c in got) == whole.chunks[-1].data
    assert follower.first_sequence is not None
    assert follower.first_sequence > (first.seq or 0)


async def test_resume_where_a_resent_chunk_was_stored_out_of_order(
    one_server: Cluster, cluster_pki: Path, front_nats: Client
) -> None:
    # As after a server failed over mid-publish: chunk 1's first copy was lost, chunks 2 and 3
    # were stored, then the publisher sent 1, 2, 3 again (marked); only 1 was new.
    job_id = 10**15 + time.time_ns() % 10**9  # far from any id the cluster gives out
    pieces = [bytes([65 + i]) * (1000 + i) for i in range(6)]
    offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    order = [(0, False), (2, False), (3, False), (1, True), (4, False), (5, False)]
    node = await _nats(
        one_server, cluster_pki, cluster_pki / "nodes" / "n1.pem", layout.node_inbox("n1")
    )
    try:
        js = node.jetstream()
        for index, resent in order:
            headers = {HEADER_STREAM: "1", HEADER_OFFSET: str(offsets[index])}
            if resent:
                headers[HEADER_RESENT] = "1"
            await js.publish(layout.output_subject(job_id), pieces[index], headers=headers)
        await js.publish(layout.end_subject(job_id), b"{}")
    finally:
        await node.close()
    data = b"".join(pieces)
    for offset in range(0, len(data) + 2, 97):
        async with Follower(front_nats, job_id, Stream.BOTH, offset) as follower:
            got = b"".join([chunk.data async for chunk in follower])
        assert got == data[offset:], offset
