"""What each role's NATS permissions refuse (cluster/natsconf.py), against a real nats-server.

Each probe connects with a node's or a front's own certificate and tries what a compromised
agent or front might: destroy the cluster's streams, take another node's start requests, forge
the other role's messages. Every attempt must be refused by the server (a permissions violation
naming the subject, or the stream's own refusal), the streams must be as they were, and the
cluster must still run a job afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
from clusterhelp import Cluster
from jobdhelp import Connect, read_output
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig
from nats.js.errors import APIError

from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.cluster import layout
from jobservice.cluster.connect import NatsSettings, nats_tls_context

# How long a refused request waits for the answer that never comes.
_REFUSED_WAIT = 0.5
# How long the server's report of a violation may take to reach the test (a bound, not a pace).
_VIOLATION_WAIT = 30.0
_STREAMS = (
    layout.START_STREAM,
    layout.OUTPUT_STREAM,
    f"KV_{layout.JOBS_BUCKET}",
    f"KV_{layout.NODES_BUCKET}",
)


class Probe:
    """A raw NATS connection with one role's certificate, collecting the server's -ERRs."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._changed = asyncio.Condition()
        self.nc = Client()

    @property
    def js(self) -> JetStreamContext:
        return self.nc.jetstream(timeout=_REFUSED_WAIT)

    async def on_error(self, exc: Exception) -> None:
        async with self._changed:
            self.errors.append(str(exc).lower())
            self._changed.notify_all()

    async def violation(self, subject: str) -> None:
        """Return once the server has reported a permissions violation on `subject` (nats-py
        calls the error callback in a task of its own, so it may come after a flush)."""
        wanted = f'"{subject.lower()}"'

        def seen() -> bool:
            return any("permissions violation" in e and wanted in e for e in self.errors)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(seen), _VIOLATION_WAIT)
            except TimeoutError:
                pytest.fail(f"no permissions violation for {subject}: {self.errors}")

    async def refused(self, subject: str, attempt: Callable[[], Awaitable[object]]) -> None:
        """`attempt` fails, and the server reported a permissions violation on `subject`."""
        with pytest.raises(NatsError):  # a timeout: the request never got through
            await attempt()
        await self.violation(subject)


@asynccontextmanager
async def probe(cluster: Cluster, cert: Path, inbox: str) -> AsyncIterator[Probe]:
    ca, key = cluster.pki / "ca.pem", cert.with_suffix(".key")
    settings = NatsSettings((cluster.servers[0].url,), ca, cert, key)
    found = Probe()
    await found.nc.connect(
        settings.servers[0],
        tls=nats_tls_context(settings),
        inbox_prefix=inbox,
        error_cb=found.on_error,
        allow_reconnect=False,
        connect_timeout=5,
    )
    try:
        yield found
    finally:
        await found.nc.close()


async def _messages(js: JetStreamContext) -> dict[str, int]:
    """The stored messages of each stream but the nodes bucket, whose count moves on its own
    (a front's first probe); one message per key in a bucket, so records are counted too."""
    return {s: (await js.stream_info(s)).state.messages for s in _STREAMS[:3]}


def _api(what: str) -> str:
    return f"$JS.API.{what}"


async def test_a_node_cannot_destroy_streams_or_take_another_nodes_work(
    one_server: Cluster, connect: Connect
) -> None:
    alice = await connect(one_server.fronts[0], "alice")
    before_job = await alice.Start(pb.StartRequest(command="echo", args=["kept"]))
    assert (await read_output(alice, before_job.job_id)).data() == b"kept\n"
    front_cert = one_server.pki / "fronts" / "f1.pem"
    node_cert = one_server.pki / "nodes" / "n1.pem"
    async with probe(one_server, front_cert, layout.front_inbox()) as watcher:
        before = await _messages(watcher.js)

    async with probe(one_server, node_cert, layout.node_inbox("n1")) as node:
        js, start = node.js, layout.START_STREAM
        for stream in (layout.OUTPUT_STREAM, start, f"KV_{layout.JOBS_BUCKET}"):
            await node.refused(_api(f"STREAM.DELETE.{stream}"), partial(js.delete_stream, stream))
            await node.refused(_api(f"STREAM.PURGE.{stream}"), partial(js.purge_stream, stream))
        await node.refused(
            _api(f"STREAM.UPDATE.{layout.OUTPUT_STREAM}"),
            lambda: js.update_stream(StreamConfig(name=layout.OUTPUT_STREAM, subjects=["x.>"])),
        )
        await node.refused(
            _api(f"STREAM.MSG.DELETE.{layout.OUTPUT_STREAM}"),
            lambda: js.delete_msg(layout.OUTPUT_STREAM, 1),
        )
        # Another node's start requests: not its consumer, not a consumer of its own name on
        # the other's subject, not an ephemeral or legacy durable one either.
        theirs, their_subject = layout.node_consumer("n2"), layout.start_subject("n2")
        mine = layout.node_consumer("n1")
        for subject, config in (
            (
                f"CONSUMER.CREATE.{start}.{theirs}.{their_subject}",
                layout.start_consumer(theirs, their_subject),
            ),
            (
                f"CONSUMER.CREATE.{start}.{mine}.{their_subject}",
                layout.start_consumer(mine, their_subject),
            ),
            (f"CONSUMER.CREATE.{start}", ConsumerConfig(filter_subject=their_subject)),
            (
                f"CONSUMER.DURABLE.CREATE.{start}.thief",
                ConsumerConfig(durable_name="thief", filter_subject=their_subject),
            ),
        ):
            await node.refused(_api(subject), partial(js.add_consumer, start, config))
        stolen = await js.pull_subscribe_bind(theirs, stream=start)
        await node.refused(
            _api(f"CONSUMER.MSG.NEXT.{start}.{theirs}"), lambda: stolen.fetch(1, timeout=1)
        )
        await node.refused(
            _api(f"CONSUMER.DELETE.{start}.{layout.ANY_CONSUMER}"),
            lambda: js.delete_consumer(start, layout.ANY_CONSUMER),
        )
        # Nor may it forge the fronts' messages or another node's heartbeat.
        for subject in (
            layout.START_ANY,
            their_subject,
            layout.stop_subject("n2"),
            layout.stdin_subject("n2"),
        ):
            await node.refused(subject, partial(js.publish, subject, b"{}"))
        heartbeat = f"$KV.{layout.NODES_BUCKET}.n2"
        await node.refused(heartbeat, lambda: js.publish(heartbeat, b"{}"))
        # A rollup would purge a whole bucket with one put: the buckets allow none.
        for key in (f"$KV.{layout.JOBS_BUCKET}.1", f"$KV.{layout.NODES_BUCKET}.n1"):
            with pytest.raises(APIError, match="rollup"):
                await js.publish(key, b"", headers={"Nats-Rollup": "all"})
        # Nor listen to the fronts' replies (followed output), another node's stops or the
        # stdin of its jobs.
        for subject in (
            f"{layout.front_inbox()}.>",
            "_INBOX.>",
            layout.stop_subject("n2"),
            layout.stdin_subject("n2"),
        ):
            await node.nc.subscribe(subject)
            await node.violation(subject)

    async with probe(one_server, front_cert, layout.front_inbox()) as watcher:
        assert await _messages(watcher.js) == before
    after = await alice.Start(pb.StartRequest(command="echo", args=["still"]))
    assert (await read_output(alice, after.job_id)).data() == b"still\n"
    assert (await read_output(alice, before_job.job_id)).data() == b"kept\n"


async def test_a_front_cannot_forge_output_or_destroy_streams(one_server: Cluster) -> None:
    front_cert = one_server.pki / "fronts" / "f2.pem"
    async with probe(one_server, front_cert, layout.front_inbox()) as front:
        js = front.js
        before = await _messages(js)
        for stream in _STREAMS:
            await front.refused(_api(f"STREAM.DELETE.{stream}"), partial(js.delete_stream, stream))
        for stream in (layout.START_STREAM, f"KV_{layout.JOBS_BUCKET}"):
            await front.refused(_api(f"STREAM.PURGE.{stream}"), partial(js.purge_stream, stream))
        await front.refused(
            _api(f"STREAM.UPDATE.{layout.OUTPUT_STREAM}"),
            lambda: js.update_stream(StreamConfig(name=layout.OUTPUT_STREAM, subjects=["x.>"])),
        )
        # It submits starts; it does not take them (they carry users' environments).
        start = layout.START_STREAM
        queue = await js.pull_subscribe_bind(layout.ANY_CONSUMER, stream=start)
        await front.refused(
            _api(f"CONSUMER.MSG.NEXT.{start}.{layout.ANY_CONSUMER}"),
            lambda: queue.fetch(1, timeout=1),
        )
        for subject in ("jobd.out.1.d", f"$KV.{layout.NODES_BUCKET}.n1"):
            await front.refused(subject, partial(js.publish, subject, b"forged"))
        assert await _messages(js) == before
