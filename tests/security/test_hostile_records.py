"""What finished jobs cost: a bounded record each, a bounded number per user, List in pages.

Before: 200 `true` jobs with ~1 MiB of arguments each kept jobd at +212 MiB for good, and List
answered all of it in one 200 MB message (8-9 s per `jobctl list`, other users slowed).
"""

from __future__ import annotations

from grpclib.const import Status
from hostilehelp import rss_kib, wait_until
from jobdhelp import Connect, JobdLauncher, list_all, read_output, status_of

from jobservice.api.pages import DEFAULT_PAGE_SIZE, MAX_PAGE_BYTES
from jobservice.api.v1 import jobservice_pb2 as pb
from jobservice.core import Limits

MIB = 1 << 10  # in KiB, as rss_kib counts
BIG_ARGS = ["a" * ((127 << 10) - 1)] * 7  # ~889 KiB: under the 1 MiB request limit
SLEEP_WITH_BIG_ARGS = ["-c", "sleep 30", "sh", *BIG_ARGS]


async def test_finished_jobs_keep_a_bounded_record(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start()
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    first = (await alice.Start(pb.StartRequest(command="true", args=BIG_ARGS))).job_id
    await read_output(alice, first)
    baseline = rss_kib(server.pid)
    for _ in range(60):  # ~52 MiB of arguments in all
        job_id = (await alice.Start(pb.StartRequest(command="true", args=BIG_ARGS))).job_id
        await read_output(alice, job_id)
    grown = rss_kib(server.pid) - baseline
    assert grown < 16 * MIB, f"jobd kept {grown} KiB for 60 finished jobs"
    print(f"60 finished jobs with ~889 KiB of arguments: jobd RSS +{grown} KiB")
    kept = (await bob.Status(pb.StatusRequest(job_id=job_id))).status.args
    assert list(kept) == ["...(7 more arguments, 910329 bytes, not kept)"]
    assert Limits().max_kept_args_bytes == 4096
    pages = await list_all(bob, page_size=1000)
    assert [job.job_id for page in pages for job in page] == list(range(first, job_id + 1))
    assert len(pages) == 1  # 61 small records now


async def test_list_comes_in_bounded_pages(jobd_launcher: JobdLauncher, connect: Connect) -> None:
    server = jobd_launcher.start()
    alice, bob = await connect(server, "alice"), await connect(server, "bob")
    charlie = await connect(server, "charlie")
    # Running jobs keep their arguments whole: two do not fit in one page's bytes.
    big = [
        (await alice.Start(pb.StartRequest(command="sh", args=SLEEP_WITH_BIG_ARGS))).job_id
        for _ in range(3)
    ]
    small = []
    for n in range(2 * DEFAULT_PAGE_SIZE + 10):
        stub = alice if n % 2 else charlie
        small.append((await stub.Start(pb.StartRequest(command="true"))).job_id)
    pages = await list_all(bob)
    sizes = [len(page) for page in pages]
    # Two big jobs never share a page; the third shares its page with small ones.
    assert sizes == [1, 1, DEFAULT_PAGE_SIZE, DEFAULT_PAGE_SIZE, 11], sizes
    assert [job.job_id for page in pages for job in page] == big + small  # each once, in order
    for page in pages:
        assert pb.ListResponse(jobs=page).ByteSize() <= MAX_PAGE_BYTES
    # alice sees her own only, paged the same way.
    alices = [job for page in await list_all(alice, page_size=7) for job in page]
    assert [job.job_id for job in alices] == big + small[1::2]
    status, text = await status_of(bob.List(pb.ListRequest(page_token="x1")))
    assert (status, text) == (
        Status.INVALID_ARGUMENT,
        "invalid page_token: pass one from a previous List response",
    )
    for job_id in big:
        await alice.Stop(pb.StopRequest(job_id=job_id))


async def test_finished_records_per_user_are_limited(
    jobd_launcher: JobdLauncher, connect: Connect
) -> None:
    server = jobd_launcher.start("--max-finished-per-user", "5")
    alice, charlie = await connect(server, "alice"), await connect(server, "charlie")
    theirs = (await charlie.Start(pb.StartRequest(command="true"))).job_id
    await read_output(charlie, theirs)
    mine = []
    for _ in range(8):
        mine.append((await alice.Start(pb.StartRequest(command="true"))).job_id)
        await read_output(alice, mine[-1])
    for job_id in mine[:3]:  # the oldest are removed
        status, _ = await status_of(alice.Status(pb.StatusRequest(job_id=job_id)))
        assert status is Status.NOT_FOUND
    listed = [job.job_id for page in await list_all(charlie) for job in page]
    assert listed == [theirs, *mine[3:]]  # charlie's own record is not one of alice's
    server.wait_for_log(rf"alice has over 5 jobs: removing jobs \[{mine[2]}\]")
    assert await wait_until(lambda: not (server.data_dir / "logs" / f"{mine[0]}.log").exists(), 5)
