"""Starting jobs: ids, the environment, PATH lookup, the process's session, and every error."""

from __future__ import annotations

import asyncio
import gc
import json
import stat
import subprocess
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from corehelp import PYTHON, collect, joined, python_job

from jobservice.core import (
    CommandNotExecutable,
    CommandNotFound,
    CoordinatorClosed,
    DirectoryNotFound,
    InvalidRequest,
    JobCoordinator,
    JobNotFound,
    JobState,
    LimitExceeded,
    Limits,
)
from jobservice.core.ids import MAX_JOB_ID
from jobservice.core.output_log import MAGIC, Admit, OutputLog


async def test_ids_start_at_zero_and_increase(coord: JobCoordinator) -> None:
    ids = [await coord.start("alice", "true") for _ in range(3)]
    assert ids == [0, 1, 2]


async def test_concurrent_starts_get_distinct_ids(coord: JobCoordinator) -> None:
    ids = await asyncio.gather(*(coord.start("alice", "true") for _ in range(50)))
    assert sorted(ids) == list(range(50))


async def test_failed_start_uses_no_id(coord: JobCoordinator) -> None:
    with pytest.raises(CommandNotFound):
        await coord.start("alice", "no-such-command-xyz")
    assert await coord.start("alice", "true") == 0


async def test_ids_continue_after_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    first = JobCoordinator(tmp_path)
    await first.wait(await first.start("a", "true"))
    await first.wait(await first.start("a", "true"))
    second = JobCoordinator(tmp_path)
    assert await second.start("a", "true") == 2
    await second.close()


async def test_other_files_in_the_log_directory_are_ignored(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "3.log").write_bytes(MAGIC)  # one of ours
    # Names jobd does not write, ids out of range, and files that are not logs of ours.
    for name in (
        "notes.log",
        "7.log.bak",
        ".log",
        "08.log",
        f"{2**63}.log",
        f"{2**64 - 1}.log",
        f"{2**62}x.log",
    ):
        (logs / name).write_bytes(MAGIC)
    (logs / "12.log").write_text("no magic: not a log jobd wrote")
    (logs / "9.log").mkdir()
    coord = JobCoordinator(tmp_path)
    assert await coord.start("a", "true") == 4
    await coord.close()


async def test_a_taken_log_name_is_skipped(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path)
    assert await coord.start("a", "true") == 0
    (tmp_path / "logs" / "1.log").write_text("planted")
    (tmp_path / "logs" / "2.log").mkdir()
    assert await coord.start("a", "true") == 3
    assert await coord.start("a", "true") == 4
    assert (tmp_path / "logs" / "1.log").read_text() == "planted"
    with pytest.raises(JobNotFound):
        coord.status(1)
    await coord.close()


async def test_ids_end_at_the_top_of_their_range(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / f"{MAX_JOB_ID - 1}.log").write_bytes(MAGIC)
    coord = JobCoordinator(tmp_path)
    assert await coord.start("a", "true") == MAX_JOB_ID
    with pytest.raises(LimitExceeded, match="no job id is left"):
        await coord.start("a", "true")
    assert [info.id for info in coord.list()] == [MAX_JOB_ID]
    await coord.close()


async def test_echo_hello_world(coord: JobCoordinator) -> None:
    job = await coord.start("alice", "echo", ["hello world"], "/tmp", ["PATH=/usr/bin:/bin"])
    assert joined(await collect(coord, job)) == b"hello world\n"
    info = coord.status(job)
    assert info.state is JobState.EXITED
    assert info.exit is not None
    assert info.exit.code == 0
    assert (info.owner, info.command, info.args, info.dir) == (
        "alice",
        "echo",
        ("hello world",),
        "/tmp",
    )


async def test_environment_is_exactly_the_given_one(
    coord: JobCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSERVICE_SERVER_SECRET", "must-not-leak")
    cmd, args = python_job("import os, json; print(json.dumps(dict(os.environ)))")
    job = await coord.start("alice", cmd, args, env=["A=1", "B=x=y", "EMPTY="])
    env = json.loads(joined(await collect(coord, job)))
    env.pop("LC_CTYPE", None)  # CPython may add this when coercing the C locale
    assert env == {"A": "1", "B": "x=y", "EMPTY": ""}


async def test_command_found_on_the_jobs_path(coord: JobCoordinator, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "greet"
    script.write_text("#!/bin/sh\necho greetings\n")
    script.chmod(0o755)
    job = await coord.start("a", "greet", env=[f"PATH={bindir}"])
    assert joined(await collect(coord, job)) == b"greetings\n"
    with pytest.raises(CommandNotFound):
        await coord.start("a", "greet")  # not on the default PATH


async def test_env_defaults_fill_only_what_env_leaves_unset(tmp_path: Path) -> None:
    """The caller's defaults (jobd's PATH and HOME) never override the request nor count in it."""
    cmd, args = python_job("import os, json; print(json.dumps(dict(os.environ)))")
    small = JobCoordinator(tmp_path, limits=Limits(max_env=1))
    try:
        job = await small.start(
            "alice", cmd, args, env=["HOME=/mine"], env_defaults={"HOME": "/x", "PATH": "/bin"}
        )
        env = json.loads(joined(await collect(small, job)))
    finally:
        await small.close()
    env.pop("LC_CTYPE", None)
    assert env == {"HOME": "/mine", "PATH": "/bin"}


async def test_default_path_when_env_has_none(coord: JobCoordinator) -> None:
    job = await coord.start("a", "env")
    # `env` was found on the safe default PATH, but no PATH is injected into the job.
    assert joined(await collect(coord, job)) == b""


async def test_relative_command_resolves_against_the_job_directory(
    coord: JobCoordinator, tmp_path: Path
) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\npwd\n")
    script.chmod(0o755)
    job = await coord.start("a", "./run.sh", dir=str(tmp_path))
    assert joined(await collect(coord, job)) == f"{tmp_path}\n".encode()


async def test_stdin_is_dev_null(coord: JobCoordinator) -> None:
    job = await coord.start("a", "cat")  # would block forever on an inherited stdin
    info = await coord.wait(job)
    assert info.exit is not None
    assert info.exit.code == 0
    assert joined(await collect(coord, job)) == b""


async def test_job_leads_its_own_session_and_process_group(coord: JobCoordinator) -> None:
    cmd, args = python_job("import os; print(os.getsid(0) == os.getpid() == os.getpgid(0))")
    job = await coord.start("a", cmd, args)
    assert joined(await collect(coord, job)) == b"True\n"


async def test_a_failing_command_is_not_a_start_error(coord: JobCoordinator) -> None:
    job = await coord.start("a", "sh", ["-c", "exit 7"])
    info = await coord.wait(job)
    assert info.exit is not None
    assert info.exit.code == 7


@pytest.mark.parametrize(
    ("command", "args", "dir", "env", "message"),
    [
        ("", [], "", [], "command must not be empty"),
        ("ec\0ho", [], "", [], "NUL"),
        ("echo", ["a\0b"], "", [], "NUL"),
        ("echo", [], "/t\0mp", [], "NUL"),
        ("echo", [], "", ["A=\0"], "NUL"),
        ("echo", [], "", ["NOEQUALS"], "is not NAME=VALUE"),
        ("echo", [], "", ["=value"], "is not NAME=VALUE"),
        ("echo", ["\udcff"], "", [], "valid UTF-8"),
        ("echo", [], "tmp", [], "absolute path"),
        ("echo", ["x"] * 5000, "", [], "too many arguments"),
        ("echo", [], "", ["A=1"] * 5000, "too many environment entries"),
        ("echo", ["x" * (600 << 10)] * 2, "", [], "limit"),
        ("x" * 5000, [], "", [], "limit 4096"),
    ],
)
async def test_invalid_requests(
    coord: JobCoordinator, command: str, args: list[str], dir: str, env: list[str], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        await coord.start("a", command, args, dir, env)
    assert coord.list() == []


async def test_command_not_found(coord: JobCoordinator) -> None:
    with pytest.raises(CommandNotFound, match="command not found: nope-xyz"):
        await coord.start("a", "nope-xyz")
    with pytest.raises(CommandNotFound):
        await coord.start("a", "/no/such/file")


async def test_command_not_executable(coord: JobCoordinator, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_text("echo hi\n")
    plain.chmod(0o644)
    with pytest.raises(CommandNotExecutable, match="permission denied"):
        await coord.start("a", str(plain))
    with pytest.raises(CommandNotExecutable, match="is a directory"):
        await coord.start("a", str(tmp_path))
    with pytest.raises(CommandNotExecutable):
        await coord.start("a", "plain", env=[f"PATH={tmp_path}"])


async def test_exec_format_error_is_not_executable(coord: JobCoordinator, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01\x02 not a program")
    garbage.chmod(stat.S_IRWXU)
    with pytest.raises(CommandNotExecutable, match="Exec format error"):
        await coord.start("a", str(garbage))
    assert coord.list() == []


async def test_directory_errors(coord: JobCoordinator, tmp_path: Path) -> None:
    with pytest.raises(DirectoryNotFound, match="directory not found"):
        await coord.start("a", "true", dir=str(tmp_path / "missing"))
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(DirectoryNotFound, match="not a directory"):
        await coord.start("a", "true", dir=str(a_file))


async def test_per_owner_running_limit(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path, limits=Limits(max_running_jobs_per_owner=2), stop_grace=1)
    a = [await coord.start("alice", "sleep", ["100"]) for _ in range(2)]
    with pytest.raises(LimitExceeded, match="alice already has 2 running jobs"):
        await coord.start("alice", "sleep", ["100"])
    await coord.start("bob", "sleep", ["100"])  # another owner is not affected
    await coord.stop(a[0])
    await coord.start("alice", "true")  # a finished job frees its slot
    await coord.close()


async def test_total_running_limit(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path, limits=Limits(max_running_jobs=1), stop_grace=1)
    await coord.start("alice", "sleep", ["100"])
    with pytest.raises(LimitExceeded, match="1 jobs are already running"):
        await coord.start("bob", "sleep", ["100"])
    await coord.close()


async def test_closed_coordinator_takes_no_new_jobs(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path)
    job = await coord.start("a", "sleep", ["100"])
    await coord.close()
    assert coord.status(job).state is JobState.EXITED
    with pytest.raises(CoordinatorClosed):
        await coord.start("a", "true")


def test_core_imports_nothing_above_it() -> None:
    code = (
        "import sys, jobservice.core\n"
        "print(sorted(m for m in sys.modules if 'grpc' in m or 'protobuf' in m\n"
        "             or m.startswith('jobservice.') and not m.startswith('jobservice.core')))"
    )
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_finished_jobs_keep_a_small_record(coord: JobCoordinator) -> None:
    # A finished job keeps its record and log, not its process handle, futures or environment
    # (which may be a megabyte): thousands of finished jobs must stay cheap.
    big_env = ["BLOB=" + "x" * 100_000]
    await coord.wait(await coord.start("a", "true", env=big_env))  # warm caches and imports
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            await coord.wait(await coord.start("a", "true", env=big_env))
        await asyncio.sleep(0)  # let the last job's retirement callback run
        gc.collect()
        per_job = (tracemalloc.get_traced_memory()[0] - before) / 300
    finally:
        tracemalloc.stop()
    assert per_job < 1500, f"{per_job:.0f} bytes retained per finished job"
    assert coord.status(0).args == ()


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating a log file takes 0.2 s, as on a disk busy writing back other jobs' output."""
    real = OutputLog.__init__

    def slow(self: OutputLog, path: Path, max_bytes: int = 0, admit: Admit | None = None) -> None:
        time.sleep(0.2)
        real(self, path, max_bytes, admit)

    monkeypatch.setattr(OutputLog, "__init__", slow)


async def test_a_slow_disk_does_not_hold_up_the_event_loop(
    coord: JobCoordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Creating the log file waits until the event loop has run something else meanwhile: if
    # the coordinator created it on the loop's thread, that could never happen.
    loop_ran = threading.Event()
    real = OutputLog.__init__

    def waits_for_the_loop(self: OutputLog, *args: Any, **kwargs: Any) -> None:
        assert loop_ran.wait(10), "the event loop was held while the log file was created"
        real(self, *args, **kwargs)

    monkeypatch.setattr(OutputLog, "__init__", waits_for_the_loop)
    starting = asyncio.create_task(coord.start("a", "true"))
    await asyncio.sleep(0)  # the start is under way (and, if it blocks, blocks here)
    loop_ran.set()
    assert await asyncio.wait_for(starting, 20) == 0


@pytest.mark.usefixtures("slow_disk")
async def test_concurrent_starts_on_a_slow_disk_keep_ids_and_limits(tmp_path: Path) -> None:
    coord = JobCoordinator(tmp_path, limits=Limits(max_running_jobs_per_owner=4), stop_grace=1)
    results = await asyncio.gather(
        *(coord.start("alice", "sleep", ["100"]) for _ in range(10)), return_exceptions=True
    )
    started = [r for r in results if isinstance(r, int)]
    assert sorted(started) == [0, 1, 2, 3]
    assert all(isinstance(r, LimitExceeded) for r in results if not isinstance(r, int))
    await coord.close()
