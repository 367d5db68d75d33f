"""Prometheus metrics of a real jobd: a scripted workload, then a scrape whose figures match it."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpclib.const import Status
from jobdhelp import Connect, Jobd, JobdLauncher, read_output, status_of
from metricshelp import metrics_url, scrape, scrape_until, value

from jobservice.api import ConnectError, open_channel
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.security import pki as pkilib


async def test_a_scrape_matches_the_workload(
    jobd_launcher: JobdLauncher, connect: Connect, pki: Path, tmp_path: Path, job_fifo: Path
) -> None:
    jobd = jobd_launcher.start("--metrics-listen=127.0.0.1:0", "--max-jobs-per-user=1")
    url = metrics_url(jobd.wait_for_log(r"metrics on \S+").string)
    alice, bob, charlie = [await connect(jobd, u) for u in ("alice", "bob", "charlie")]
    # Four jobs that end: two exit, one is killed by a signal, one by its timeout; each is
    # followed to its end.
    streamed = 0
    for script in ("echo hello", "echo oops >&2; exit 3", "kill -TERM $$", "exec sleep 1000"):
        limits = pb.ResourceLimits(timeout_seconds=0.1) if "sleep" in script else None
        request = pb.StartRequest(command="/bin/sh", args=["-c", script], limits=limits)
        job = (await alice.Start(request)).job_id
        output = await read_output(alice, job)
        streamed += len(output.data())
    # One that is still running at the scrape, having printed a line.
    fifo = job_fifo
    running = await charlie.Start(
        pb.StartRequest(command="/bin/sh", args=["-c", f"echo first; cat {fifo}"])
    )
    async with charlie.Output.open() as stream:
        await stream.send_message(pb.OutputRequest(job_id=running.job_id), end=True)
        first = await stream.recv_message()
        assert first is not None
        streamed += len(first.chunk.data)
        await stream.cancel()

    for job_id in range(3):
        assert (await alice.Status(pb.StatusRequest(job_id=job_id))).status.job_id == job_id
    assert (await status_of(alice.Status(pb.StatusRequest(job_id=99))))[0] is Status.NOT_FOUND
    # Denials: charlie's job is hidden from alice (self), bob (analyst) may not stop, mallory
    # is in no policy.
    hidden = await status_of(alice.Status(pb.StatusRequest(job_id=running.job_id)))
    assert hidden[0] is Status.NOT_FOUND
    assert (await status_of(bob.Stop(pb.StopRequest(job_id=0))))[0] is Status.PERMISSION_DENIED
    mallory = await connect(jobd, "mallory")
    assert (await status_of(mallory.List(pb.ListRequest())))[0] is Status.PERMISSION_DENIED
    # A limit: charlie's one running job is all --max-jobs-per-user allows.
    refused = await status_of(charlie.Start(pb.StartRequest(command="/bin/true")))
    assert refused[0] is Status.RESOURCE_EXHAUSTED
    # A handshake refused: a certificate from a CA jobd does not trust.
    other = pkilib.create_ca("another CA")
    stranger = pkilib.issue_certificate(other, "alice")
    stranger.write(tmp_path / "stranger.pem", tmp_path / "stranger.key")
    with pytest.raises(ConnectError):
        await open_channel(
            jobd.target,
            ca=pki / "ca.pem",
            cert=tmp_path / "stranger.pem",
            key=tmp_path / "stranger.key",
        )

    got = scrape_until(
        url,
        lambda now: (
            value(now, "jobd_tls_handshakes_refused_total", reason="cert_untrusted") == 1
            and value(now, "jobd_rpcs_total", method="Output", code="CANCELLED") == 1
        ),
    )
    jobs = {info.job_id: info for info in (await charlie.List(pb.ListRequest())).jobs}
    assert value(got, "jobd_jobs_started_total") == 5
    assert value(got, "jobd_jobs_ended_total", outcome="exited") == 2
    assert value(got, "jobd_jobs_ended_total", outcome="signalled") == 1
    assert value(got, "jobd_jobs_ended_total", outcome="timed_out") == 1
    for outcome in ("out_of_memory", "lost"):
        assert value(got, "jobd_jobs_ended_total", outcome=outcome) == 0
    assert value(got, "jobd_jobs_running") == 1
    recorded = sum(info.output_bytes for info in jobs.values())
    assert recorded == len(b"hello\noops\nfirst\n")
    assert value(got, "jobd_output_recorded_bytes_total") == recorded
    assert value(got, "jobd_output_streamed_bytes_total") == streamed
    assert value(got, "jobd_rpcs_total", method="Status", code="OK") == 3
    assert value(got, "jobd_rpcs_total", method="Status", code="NOT_FOUND") == 2
    assert value(got, "jobd_rpcs_total", method="Start", code="OK") == 5
    assert value(got, "jobd_rpcs_total", method="Start", code="RESOURCE_EXHAUSTED") == 1
    assert value(got, "jobd_limits_hit_total", limit="running_jobs") == 1
    assert value(got, "jobd_rpcs_total", method="Stop", code="PERMISSION_DENIED") == 1
    assert value(got, "jobd_rpcs_total", method="Output", code="OK") == 4
    assert value(got, "jobd_rpcs_total", method="Output", code="CANCELLED") == 1
    assert value(got, "jobd_rpc_duration_seconds_count", method="Status") == 5
    assert value(got, "jobd_authorization_denials_total", reason="hidden") == 1
    assert value(got, "jobd_authorization_denials_total", reason="role") == 1
    assert value(got, "jobd_authorization_denials_total", reason="unknown_user") == 1
    assert value(got, "jobd_output_streams_open") == 0
    assert value(got, "jobd_connections_open") >= 4  # alice, bob, charlie, mallory
    # Labels come from fixed sets: no job id, user or command line anywhere.
    for _, labels in got:
        for _label, label_value in labels:
            assert label_value not in {"alice", "bob", "charlie", "mallory", "/bin/sh"}


def test_metrics_are_off_unless_asked(jobd: Jobd) -> None:
    jobd.wait_for_log("jobd listening on")
    assert "metrics on" not in jobd.log


async def test_jobs_found_lost_at_start_are_counted(
    jobd_launcher: JobdLauncher, connect: Connect, tmp_path: Path
) -> None:
    data = tmp_path / "kept"
    crashed = jobd_launcher.start(data_dir=data)
    alice = await connect(crashed, "alice")
    await alice.Start(pb.StartRequest(command="/bin/sleep", args=["1000"]))
    crashed.process.kill()  # no clean shutdown: the job is lost
    crashed.process.wait()
    jobd = jobd_launcher.start("--metrics-listen=127.0.0.1:0", data_dir=data)
    got = scrape(metrics_url(jobd.wait_for_log(r"metrics on \S+").string))
    assert value(got, "jobd_jobs_ended_total", outcome="lost") == 1
    assert value(got, "jobd_jobs_running") == 0
