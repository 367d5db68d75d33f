"""Planted and hostile job ids: files a job drops in jobd's logs directory cost no one a start.

Jobs run as jobd's user, so a job can write into the data directory: here alice's job plants
the file the next job's log would be, and files that would push the ids past what a uint64 holds.
"""

from __future__ import annotations

from grpclib.const import Status
from jobdhelp import Connect, JobdLauncher, read_output, status_of

from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core.ids import MAX_JOB_ID
from jobservice.core.output_log import MAGIC


async def test_a_file_planted_under_the_next_ids_name_is_skipped(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start()
    alice, charlie = await connect(server, "alice"), await connect(server, "charlie")
    logs = server.data_dir / "logs"
    plant = pb.StartRequest(command="sh", args=["-c", f"echo forged > {logs}/1.log"])
    job_id = (await alice.Start(plant)).job_id
    assert job_id == 0
    assert (await read_output(alice, job_id)).final is not None  # planted, and over
    assert (logs / "1.log").read_bytes() == b"forged\n"
    first = (await alice.Start(pb.StartRequest(command="true"))).job_id
    second = (await charlie.Start(pb.StartRequest(command="true"))).job_id
    assert (first, second) == (2, 3)  # the taken id skipped, the rest in order
    assert (logs / "1.log").read_bytes() == b"forged\n"  # not written into
    status, _ = await status_of(charlie.Status(pb.StatusRequest(job_id=1)))
    assert status is Status.NOT_FOUND
    server.wait_for_log(r"/1\.log already exists: job id 1 skipped")


async def test_out_of_range_names_are_ignored_and_ids_end_at_the_limit(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    first = jobd_launcher.start()
    alice = await connect(first, "alice")
    logs = first.data_dir / "logs"
    # Out of range (the finding's 2^64 - 1 included), or not a log of jobd's: ignored.
    for name in (f"{MAX_JOB_ID + 1}.log", f"{2**64 - 1}.log", "9" * 40 + ".log"):
        (logs / name).write_bytes(MAGIC)
    (logs / f"{MAX_JOB_ID}.log").write_text("")
    first.terminate()
    second = jobd_launcher.start(data_dir=first.data_dir)
    alice = await connect(second, "alice")
    assert (await alice.Start(pb.StartRequest(command="true"))).job_id == 0
    # A forged log just under the top: ids continue there, and end there.
    (logs / f"{MAX_JOB_ID - 1}.log").write_bytes(MAGIC)
    (logs / f"{MAX_JOB_ID}.log").unlink()  # (else that name would be taken too)
    second.terminate()
    third = jobd_launcher.start(data_dir=first.data_dir)
    alice, bob = await connect(third, "alice"), await connect(third, "bob")
    assert (await alice.Start(pb.StartRequest(command="true"))).job_id == MAX_JOB_ID
    status, text = await status_of(alice.Start(pb.StartRequest(command="true")))
    assert (status, text) == (
        Status.RESOURCE_EXHAUSTED,
        f"no job id is left (the last is {MAX_JOB_ID})",
    )
    listed = (await bob.List(pb.ListRequest())).jobs  # no INTERNAL, for anyone
    assert [job.job_id for job in listed] == [0, MAX_JOB_ID]  # (0: from the second run)
    assert (await bob.Status(pb.StatusRequest(job_id=MAX_JOB_ID))).status.job_id == MAX_JOB_ID
    assert third.log.count("started by alice") == 1  # nothing spawned for the refused start
