"""Metrics in a cluster: each agent serves its own jobs' figures, each front its RPCs'."""

from __future__ import annotations

from pathlib import Path

from clusterhelp import Cluster
from jobdhelp import Connect, read_output
from metricshelp import metrics_url, scrape, scrape_until, value

from jobservice.api.v1 import jobservice_pb2 as pb


async def test_an_agent_and_a_front_serve_their_own_metrics(
    cluster_pki: Path, tmp_path: Path, connect: Connect
) -> None:
    with Cluster(cluster_pki, tmp_path, size=1) as cluster:
        front = cluster.start_front("f1", "--metrics-listen=127.0.0.1:0")
        agent = cluster.start_agent("n1", "--metrics-listen=127.0.0.1:0")
        alice = await connect(front, "alice")
        job = (await alice.Start(pb.StartRequest(command="/bin/echo", args=["hi"]))).job_id
        assert (await read_output(alice, job)).data() == b"hi\n"

        at_agent = scrape_until(
            metrics_url(agent.log),
            lambda now: value(now, "jobd_jobs_ended_total", outcome="exited") == 1,
        )
        assert value(at_agent, "jobd_jobs_started_total") == 1
        assert value(at_agent, "jobd_jobs_ended_total", outcome="exited") == 1
        assert value(at_agent, "jobd_jobs_running") == 0
        assert value(at_agent, "jobd_output_recorded_bytes_total") == 3
        # An agent serves no API: no RPC, stream or connection series.
        assert not any(name.startswith(("jobd_rpc", "jobd_connections")) for name, _ in at_agent)

        at_front = scrape(metrics_url(front.wait_for_log(r"metrics on \S+").string))
        assert value(at_front, "jobd_rpcs_total", method="Start", code="OK") == 1
        assert value(at_front, "jobd_output_streamed_bytes_total") == 3
