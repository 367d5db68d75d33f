"""jobd's Prometheus metrics: one registry, the small functions the server calls, a listener.

Off unless `jobd serve --metrics-listen` asks: then `enable` builds the registry (only then is
`prometheus_client` imported) before the server exists, so that jobs found lost at start-up are
counted, `watch` adds the server's live figures, and `listen` serves them over plain HTTP from a
thread of its own.
While off, every recording function returns at once.

Labels take values from fixed sets only (the tuples below, RPC names, gRPC status names): no job
id, user or command line ever becomes a label, so a scrape stays small whatever the traffic.
Figures that describe the present (running jobs, open streams and connections, output of running
jobs) are read at scrape time on the event loop, never from the scrape thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobservice.api.refusals import RefusalReason
from jobservice.core import JobInfo, JobState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.metrics_core import Metric

__all__ = [
    "DENIALS",
    "HANDSHAKE_REFUSALS",
    "LIMITS",
    "OUTCOMES",
    "JobMetrics",
    "Live",
    "authorization_denied",
    "enable",
    "handshake_refused",
    "limit_hit",
    "listen",
    "outcome_of",
    "output_streamed",
    "rpc_done",
    "watch",
]

log = logging.getLogger("jobservice.metrics")

# How a job ended: a kill's cause (memory, time) first, else how its process ended.
OUTCOMES = ("exited", "signalled", "out_of_memory", "timed_out", "lost")
# Why a connection was refused: in its TLS handshake (refusals.RefusalReason, by name), or right
# after it by the gate (a session outside the policy, too much data before the handshake ended).
HANDSHAKE_REFUSALS = (*(reason.name.lower() for reason in RefusalReason), "policy", "flood")
# Why authorization refused a call: a user in no policy, a role without the permission, or a job
# the caller may not see (answered as if it did not exist; counted here, never told).
DENIALS = ("unknown_user", "role", "hidden")
# Which limit a request or connection ran into.
LIMITS = (
    "running_jobs",
    "output_streams",
    "request_size",
    "request_timeout",
    "output_bytes",
    "connections",
    "connections_per_user",
)
# Seconds; unary calls take about a millisecond, Output streams as long as their job.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 300, 3600)
_SCRAPE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Live:
    """The present, read on the event loop at each scrape (None: not served by this process)."""

    running_jobs: int
    running_output_bytes: int
    open_streams: int | None = None
    open_connections: int | None = None


class _Metrics:
    """The registry and every metric in it."""

    def __init__(self) -> None:
        from prometheus_client import (  # noqa: PLC0415
            CollectorRegistry,
            Counter,
            Histogram,
            disable_created_metrics,
        )

        # A `_created` timestamp beside every series would double the scrape for no figure.
        disable_created_metrics()  # type: ignore[no-untyped-call]

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=False)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        def preset(name: str, doc: str, label: str, values: tuple[str, ...]) -> Counter:
            """A counter with one label whose every value is a series from the start, at 0."""
            made = counter(name, doc, label)
            for value in values:
                made.labels(value)
            return made

        self.started = counter("jobd_jobs_started", "Jobs started.")
        self.ended = preset("jobd_jobs_ended", "Jobs ended, by outcome.", "outcome", OUTCOMES)
        self.streamed = counter("jobd_output_streamed_bytes", "Output bytes sent on streams.")
        self.rpcs = counter("jobd_rpcs", "Calls answered, by method and status.", "method", "code")
        self.latency: Histogram = Histogram(
            "jobd_rpc_duration_seconds",
            "Time from a call's start to its answer (an Output stream: to its end).",
            ["method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.refused = preset(
            "jobd_tls_handshakes_refused",
            "Connections refused at or right after the TLS handshake, by reason.",
            "reason",
            HANDSHAKE_REFUSALS,
        )
        self.denied = preset(
            "jobd_authorization_denials",
            "Calls authorization refused, by reason.",
            "reason",
            DENIALS,
        )
        self.limits = preset(
            "jobd_limits_hit", "Requests and connections refused by a limit.", "limit", LIMITS
        )
        self.ended_output_bytes = 0


_active: _Metrics | None = None


def enable() -> CollectorRegistry:
    """Build the registry: from now on the recording functions count."""
    global _active  # noqa: PLW0603 (one registry per process, as the process is one jobd)
    _active = _Metrics()
    return _active.registry


def watch(live: Callable[[], Live], loop: asyncio.AbstractEventLoop) -> None:
    """At each scrape, call `live` on `loop` for the figures of the present."""
    assert _active is not None, "enable() first"
    _active.registry.register(_LiveCollector(_active, live, loop))


def listen(host: str, port: int) -> tuple[str, int]:
    """Serve the registry over HTTP on host:port (port 0: any free one); the bound address."""
    from prometheus_client import start_http_server  # noqa: PLC0415

    assert _active is not None, "enable() first"
    server, _ = start_http_server(port, host, registry=_active.registry)
    return host, int(server.server_port)


class JobMetrics:
    """The coordinator's observer: counts jobs as they start and end, and knows which run."""

    def __init__(self) -> None:
        self.running: set[int] = set()

    def live(
        self,
        status: Callable[[int], JobInfo],
        streams: int | None = None,
        connections: int | None = None,
    ) -> Live:
        """The present: the running jobs (their output so far through `status`), and the rest."""
        running = self.running
        output = sum(status(job_id).output_bytes for job_id in running)
        return Live(len(running), output, streams, connections)

    def job_started(self, info: JobInfo) -> None:
        self.running.add(info.id)
        if _active is not None:
            _active.started.inc()

    def job_ended(self, info: JobInfo) -> None:
        self.running.discard(info.id)
        if _active is not None:
            _active.ended.labels(outcome_of(info)).inc()
            _active.ended_output_bytes += info.output_bytes
            if info.output_truncated:
                _active.limits.labels("output_bytes").inc()


def outcome_of(info: JobInfo) -> str:
    """The `OUTCOMES` value for a finished job."""
    if info.state is JobState.LOST:
        return "lost"
    if info.oom_killed:
        return "out_of_memory"
    if info.timed_out:
        return "timed_out"
    if info.exit is not None and info.exit.signal is not None:
        return "signalled"
    return "exited"


def rpc_done(method: str, code: str, seconds: float) -> None:
    """One call answered with gRPC status `code` (its name) after `seconds`."""
    if _active is not None:
        _active.rpcs.labels(method, code).inc()
        _active.latency.labels(method).observe(seconds)


def output_streamed(nbytes: int) -> None:
    if _active is not None:
        _active.streamed.inc(nbytes)


def handshake_refused(reason: str) -> None:
    """A connection refused for `reason`, one of HANDSHAKE_REFUSALS."""
    if _active is not None:
        _active.refused.labels(reason).inc()


def authorization_denied(reason: str) -> None:
    """A call refused by authorization for `reason`, one of DENIALS."""
    if _active is not None:
        _active.denied.labels(reason).inc()


def limit_hit(limit: str) -> None:
    """A request or connection refused by `limit`, one of LIMITS."""
    if _active is not None:
        _active.limits.labels(limit).inc()


class _LiveCollector:
    """Figures of the present, computed on the event loop when Prometheus scrapes."""

    def __init__(
        self, metrics: _Metrics, live: Callable[[], Live], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._metrics = metrics
        self._live = live
        self._loop = loop

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        # The scrape runs in the HTTP server's thread; the figures belong to the event loop.
        now = asyncio.run_coroutine_threadsafe(self._read(), self._loop).result(_SCRAPE_TIMEOUT)
        recorded, ended_bytes = now
        yield GaugeMetricFamily("jobd_jobs_running", "Jobs running now.", recorded.running_jobs)
        yield CounterMetricFamily(
            "jobd_output_recorded_bytes",
            "Output bytes written to job logs (running jobs included).",
            ended_bytes + recorded.running_output_bytes,
        )
        if recorded.open_streams is not None:
            yield GaugeMetricFamily(
                "jobd_output_streams_open", "Output streams open now.", recorded.open_streams
            )
        if recorded.open_connections is not None:
            yield GaugeMetricFamily(
                "jobd_connections_open", "Client connections open now.", recorded.open_connections
            )

    async def _read(self) -> tuple[Live, int]:
        return self._live(), self._metrics.ended_output_bytes
