"""The spawner (core/confine/spawnd.c, or spawnd.py without a compiler): confined jobs are
jobd's own children, started clean.

Each test compares with what the plain path (Popen in jobd) gives, or kills the real spawner
process: no part of it is replaced. Every test runs against both spawners.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from corehelp import collect, joined

from jobservice.core import JobCoordinator, SpawnFailed
from jobservice.core.confine import Account, Confinement, spawnd, spawner
from jobservice.core.confine.spawner import Spawner

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the spawner runs jobs as others")

PROGRAMS = {"compiled": [str(spawner.COMPILED)], "python": spawner.python_program()}


@pytest.fixture(params=sorted(PROGRAMS))
def program(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "compiled" and not os.access(spawner.COMPILED, os.X_OK):
        pytest.fail("jobd-spawnd is not built: `make dev` builds it (test_it_is_built says why)")
    return PROGRAMS[request.param]


@pytest.fixture
async def confined(
    tmp_path: Path, confinement: Confinement, program: list[str]
) -> AsyncIterator[JobCoordinator]:
    """A confined coordinator whose spawner is `program` (the conftest's, with each spawner)."""
    c = JobCoordinator(tmp_path / "data", stop_grace=1.0, confinement=confinement)
    c.spawner.close()  # not started yet: its place is taken before any job
    c.spawner = Spawner(program)
    yield c
    await c.close()


def test_it_is_built_where_there_is_a_compiler() -> None:
    """`make dev` builds jobd-spawnd wherever `cc` is: a failed build would leave jobd on the
    slower Python spawner without a word."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler: jobd uses spawnd.py")
    assert os.access(spawner.COMPILED, os.X_OK)
    assert spawner.default_program() == [str(spawner.COMPILED)]


# What a job (the shell) learns of itself: its parent, session, open fds (which its commands
# inherit) and signal dispositions (idem, those it ignores).
SELF = (
    "echo ppid=$PPID; "
    "grep -E '^(SigIgn|SigBlk):' /proc/self/status; "
    "echo sid=$(cut -d' ' -f6 /proc/self/stat) pid=$$; "
    "ls /proc/self/fd"
)


async def _self_report(coord: JobCoordinator, **kwargs: object) -> list[str]:
    job = await coord.start("a", "sh", ["-c", SELF], dir="/", **kwargs)  # type: ignore[arg-type]
    return joined(await collect(coord, job)).decode().splitlines()


async def test_a_confined_job_is_started_like_one_jobd_forks_itself(
    confined: JobCoordinator, coord: JobCoordinator
) -> None:
    spawned = await _self_report(confined, run_as=Account.lookup("nobody"))
    forked = await _self_report(coord)
    assert confined.spawner.pid is not None  # it went through the spawner
    # Our child, not the spawner's: jobd watches and reaps it as any other.
    assert spawned[0] == f"ppid={os.getpid()}"
    assert spawned[1:3] == forked[1:3]  # the same ignored and blocked signals
    sid, pid = (field.split("=")[1] for field in spawned[3].split())
    assert sid == pid  # the leader of its own session
    # 0-2, and the one ls opens to list them: nothing of the spawner's leaks in.
    assert spawned[4:] == forked[4:]
    assert len(spawned[4:]) == 4


async def test_a_large_request_arrives_whole(confined: JobCoordinator) -> None:
    big = "x" * 100_000  # twice: more than one message holds, so it travels in a memfd
    script = 'printf %s "$BIG$1" | wc -c'
    job = await confined.start("a", "sh", ["-c", script, "-", big], env=[f"BIG={big}"])
    assert joined(await collect(confined, job)) == b"200000\n"


async def test_a_dead_spawner_is_replaced(confined: JobCoordinator) -> None:
    job = await confined.start("a", "true")
    await confined.wait(job)
    first = confined.spawner.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)  # our own child, by its pid
    # The next start may be the one that finds it gone (SpawnFailed); then a new one takes over.
    refusal = ""
    try:
        job = await confined.start("a", "echo", ["again"])
    except SpawnFailed as exc:
        refusal = str(exc)
        job = await confined.start("a", "echo", ["again"])
    assert refusal in ("", "the spawner exited") or "cannot reach the spawner" in refusal
    assert joined(await collect(confined, job)) == b"again\n"
    assert confined.spawner.pid not in (None, first)


async def test_a_cancelled_start_leaves_no_process_and_no_cgroup(
    confined: JobCoordinator, confinement: Confinement, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    starting = asyncio.ensure_future(
        confined.start("a", "sh", ["-c", f"touch {marker}; exec sleep 1000"])
    )
    while confined.spawner.in_flight == 0:  # the request is with the spawner
        await asyncio.sleep(0)
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    # The job was started all the same, then killed, reaped and its group removed.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while confinement.job_ids() and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert confinement.job_ids() == []
    assert confined.list() == []


async def test_many_large_starts_at_once_all_arrive(confined: JobCoordinator) -> None:
    # 100 requests of ~50 KB each, at once: more than the socket's buffer holds, and more
    # than may be in flight: they wait their turn instead of failing.
    value = "y" * 50_000
    jobs = await asyncio.gather(
        *(confined.start("a", "sh", ["-c", "echo ${#V}"], env=[f"V={value}"]) for _ in range(100))
    )
    outputs = await asyncio.gather(*(collect(confined, job) for job in jobs))
    assert {joined(output) for output in outputs} == {b"50000\n"}


@pytest.mark.parametrize("clone3", [True, False], ids=["clone3", "clone"])
def test_the_clone_makes_the_child_its_callers_parents(clone3: bool) -> None:
    """CLONE_PARENT by clone3, and by clone(2) where clone3 is filtered (systemd's
    RestrictNamespaces answers it ENOSYS): the child is the spawner's parent's, here ours."""
    script = (
        f"import sys; sys.path.insert(0, {str(Path(spawnd.__file__).parent)!r}); import os; "
        f"import spawnd; pid = spawnd.Cloner(clone3={clone3}).clone(); "
        "pid or os.execv('/bin/sh', ['sh', '-c', 'exit 7']); print(pid)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, check=True
    )
    _, status = os.waitpid(int(out.stdout), 0)  # ChildProcessError if it were not ours
    assert os.waitstatus_to_exitcode(status) == 7


async def test_an_answer_nobody_waits_for_any_more_is_dropped_quietly(
    confined: JobCoordinator,
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    await confined.wait(await confined.start("a", "true"))  # the spawner runs
    waiting = asyncio.ensure_future(confined.spawner.finish([], []))
    while confined.spawner.in_flight == 0:  # asked; the answer is on its way
        await asyncio.sleep(0)
    waiting.cancel()
    job = await confined.start("a", "echo", ["after"])
    assert joined(await collect(confined, job)) == b"after\n"
    assert errors == []  # no InvalidStateError from answering a cancelled request


_LIMIT = "2"  # seconds a child may take to exec before it is killed (jobd's spawners: 10)


@pytest.fixture(params=["", "copy"], ids=["", "copy"])
def channel(program: list[str], request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    """A spawner process on a socketpair of ours, to speak its protocol byte by byte; the
    compiled one also in the mode it takes where fs.suid_dumpable is not 0 (its child gets a
    copy of its memory instead of sharing it)."""
    if request.param and program != PROGRAMS["compiled"]:
        pytest.skip("spawnd.py always copies")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mode = [request.param] if request.param else []
    argv = [*program, str(theirs.fileno()), _LIMIT, *mode]
    process = subprocess.Popen(argv, pass_fds=[theirs.fileno()], env={})
    theirs.close()
    ours.settimeout(30)
    yield ours
    ours.close()  # end-of-file: it exits
    assert process.wait(30) == 0


def _ask(channel: socket.socket, message: bytes, fds: list[int] | None = None) -> bytes:
    socket.send_fds(channel, [message], fds or [])
    return channel.recv(1 << 16)


def _request(*fields: bytes) -> bytes:
    return b"".join(f + b"\0" for f in fields)


def test_bad_requests_are_refused_and_it_serves_on(channel: socket.socket, tmp_path: Path) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    three = [null, null, null]
    good = _request(b"", b"", b"/", b"/bin/sh", b"", b"0", b"3", b"sh", b"-c", b"exit 3")
    refused = b"E request 22 0"
    try:
        assert _ask(channel, b"S" + good, [null]) == refused  # one fd, not three
        assert _ask(channel, b"S" + good, [null] * 4) == refused  # four without a memfd
        assert _ask(channel, b"S", three) == refused  # empty
        assert _ask(channel, b"S" + _request(b"", b"", b"/", b"", b""), three) == refused
        for fields in (
            (b"x", b"", b"/", b"", b"", b"0", b"1", b"true"),  # a uid that is no number
            (b"", b"", b"/", b"", b"", b"9", b"1", b"true"),  # more procs than fields
            (b"", b"", b"/", b"", b"", b"0", b"0"),  # no argv
            (b"", b"", b"/", b"", b"", b"0", b"5", b"true"),  # more argv than fields
            (b"", b"", b"/", b"", b"", b"-1", b"1", b"true"),  # a negative count
        ):
            assert _ask(channel, b"S" + _request(*fields), three) == refused, fields
        assert _ask(channel, b"M", three) == refused  # no memfd before the three
        assert _ask(channel, b"X", []) == refused  # no such request
        assert _ask(channel, b"F" + _request(b"nine"), []).startswith(b"F 22\0")
        assert _ask(channel, b"F" + _request(b"3", b"/x"), []).startswith(b"F 22\0")
        # Still serving: a good request starts a job (our child, by CLONE_PARENT).
        answer = _ask(channel, b"S" + good, three).decode().split()
        assert answer[0] == "P"
        _, status = os.waitpid(int(answer[1]), 0)
        assert os.waitstatus_to_exitcode(status) == 3
    finally:
        os.close(null)


def test_a_finish_reads_files_then_removes_dirs(channel: socket.socket, tmp_path: Path) -> None:
    usage = tmp_path / "cpu.stat"
    usage.write_bytes(b"usage_usec 7\n" * 400)  # 5,600 bytes: the first 4,096 are read
    group = tmp_path / "group"
    group.mkdir()
    busy = tmp_path / "busy"
    (busy / "inside").mkdir(parents=True)
    fields = [b"2", bytes(usage), bytes(tmp_path / "missing"), bytes(group), bytes(busy)]
    answer = _ask(channel, b"F" + _request(*fields))
    status, first, second, end = answer.split(b"\0")
    assert status == b"F 39"  # ENOTEMPTY: the first rmdir that failed
    assert first == usage.read_bytes()[:4096]
    assert (second, end) == (b"", b"")
    assert not group.exists()
    assert busy.exists()


def test_the_path_search_is_execvps(channel: socket.socket, tmp_path: Path) -> None:
    """As the job's account: a directory without the file is passed over, one whose file is
    not executable is remembered (EACCES unless found later), a missing #! interpreter stops
    the search ("interp"), and the first that runs wins."""
    null = os.open(os.devnull, os.O_RDWR)
    bare, locked, runs, broken = (tmp_path / d for d in ("bare", "locked", "runs", "broken"))
    for d in (bare, locked, runs, broken):
        d.mkdir()
    (locked / "job").write_text("#!/bin/sh\nexit 1\n")
    (runs / "job").write_text("#!/bin/sh\nexit 4\n")
    (runs / "job").chmod(0o755)
    (broken / "job").write_text("#!/no/such/interpreter\n")
    (broken / "job").chmod(0o755)

    def start(path: Path | str) -> list[str]:
        fields = (b"", b"", b"/", b"", os.fsencode(path), b"0", b"1", b"job")
        return _ask(channel, b"S" + _request(*fields), [null] * 3).decode().split()

    try:
        answer = start(f"{bare}:{locked}:{runs}")
        assert answer[0] == "P"
        assert os.waitstatus_to_exitcode(os.waitpid(int(answer[1]), 0)[1]) == 4
        for path, refusal in ((f"{bare}:{locked}", ["exec", "13"]), (bare, ["exec", "2"])):
            answer = start(path)
            assert answer[1:3] == refusal
            assert os.waitstatus_to_exitcode(os.waitpid(int(answer[3]), 0)[1]) == 127
        answer = start(f"{bare}:{broken}:{runs}")
        assert answer[1:3] == [f"interp:{b'/no/such/interpreter'.hex()}", "2"]
        os.waitpid(int(answer[3]), 0)
    finally:
        os.close(null)


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"#!/no/such/sh -e\n", b"/no/such/sh"),
        (b"#! \t/no/such/sh\n", b"/no/such/sh"),
        (b"#!/no/" + b"x" * 200 + b"\n", b"/no/" + b"x" * 125),  # 129 bytes: jobd shows 128
        (b"#!/no/such/sh\r\n", b"/no/such/sh\r"),  # saved with CRLF: the kernel looks for "sh\r"
    ],
    ids=["args", "blanks", "long", "crlf"],
)
def test_a_missing_interpreter_is_named_as_the_account_reads_it(
    channel: socket.socket, head: bytes, named: bytes
) -> None:
    """The child names the program a file's #! line names (as the kernel parses that line),
    read as the job's account: jobd never reads the file itself, as root. A file the account
    may run but not read (mode 0711) gets no name: its #! line is none of its business.
    An executable that is not a script but gets ENOENT (an ELF file whose loader is missing)
    is an exec failure as before."""
    where = tempfile.TemporaryDirectory()  # where nobody may look (not under /root)
    null = os.open(os.devnull, os.O_RDWR)
    Path(where.name).chmod(0o755)
    script = Path(where.name) / "script"
    script.write_bytes(head)
    script.chmod(0o711)
    nobody = Account.lookup("nobody")

    def start(*ids: bytes) -> list[str]:
        fields = (*ids, b"/", os.fsencode(script), b"", b"0", b"1", b"script")
        return _ask(channel, b"S" + _request(*fields), [null] * 3).decode().split()

    try:
        for ids, expected in (
            ((b"", b""), f"interp:{named.hex()}"),  # as root: readable
            ((str(nobody.uid).encode(), str(nobody.gid).encode()), "interp:"),
        ):
            answer = start(*ids)
            assert answer[1:3] == [expected, "2"]
            os.waitpid(int(answer[3]), 0)
        script.write_bytes(_without_loader(Path("/bin/true").read_bytes()))
        for ids in ((b"", b""), (str(nobody.uid).encode(), str(nobody.gid).encode())):
            script.chmod(0o755)
            answer = start(*ids)
            assert answer[1:3] == ["exec", "2"]
            os.waitpid(int(answer[3]), 0)
    finally:
        os.close(null)
        where.cleanup()


def _without_loader(elf: bytes) -> bytes:
    """A copy of a 64-bit little-endian ELF executable whose PT_INTERP names a missing file."""
    assert elf[:6] == b"\x7fELF\x02\x01", "a 64-bit little-endian ELF file"
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    size, count = (int.from_bytes(elf[at : at + 2], "little") for at in (0x36, 0x38))
    for header in range(phoff, phoff + size * count, size):
        if int.from_bytes(elf[header : header + 4], "little") == 3:  # PT_INTERP
            offset = int.from_bytes(elf[header + 8 : header + 16], "little")
            length = int.from_bytes(elf[header + 32 : header + 40], "little") - 1  # its NUL
            missing = (b"/no/such/loader" + b"x" * length)[:length]
            return elf[:offset] + missing + elf[offset + length :]
    raise AssertionError("no PT_INTERP: a static executable")


# An account no other process on the host uses: the attack below signals all of its processes.
_STRANGER = Account("jobd-test-stopper", 64_998, 64_998, "/")
# As that account only (it checks), stop every process of the account, over and over. Never
# run this as anyone else: `kill -STOP -1` as root stops the whole machine.
_STOPPER = f'[ "$(id -u)" = {_STRANGER.uid} ] || exit 9; while :; do kill -STOP -1; done'


@pytest.mark.timeout(60)  # without the watchdog, the stopped start holds the spawner for good
async def test_a_start_stopped_before_exec_is_killed_not_waited_for(
    confined: JobCoordinator,
) -> None:
    """Between switching account and exec, the child may be signalled by any process of the
    account. One that stops it would hold the spawner, and every start behind it, for good."""
    stopper = await confined.start("a", "sh", ["-c", _STOPPER], run_as=_STRANGER)
    # A long PATH search before the exec that succeeds: a window of some milliseconds in which
    # the stopper, a few microseconds a round, cannot miss the child.
    path = ":".join(f"/nonexistent/{i}" for i in range(3000)) + ":/bin"
    refusal = ""
    try:
        for _ in range(20):
            try:
                await confined.start("a", "true", env=[f"PATH={path}"], run_as=_STRANGER)
            except SpawnFailed as exc:
                refusal = str(exc)
                break
    finally:
        await confined.stop(stopper)
    assert "a signal stopped it before it could run, so it was killed" in refusal
    ended = confined.status(stopper).exit
    assert ended is not None
    assert ended.signal == signal.SIGTERM  # stopped by us: it ran (exit 9: as someone else)
    job = await confined.start("a", "echo", ["after"], run_as=_STRANGER)
    assert joined(await collect(confined, job)) == b"after\n"


def test_a_start_that_never_execs_is_killed_after_the_limit(
    channel: socket.socket, tmp_path: Path
) -> None:
    """Not stopped, only waiting (here on a FIFO nobody opens; for a job, a directory on a
    network or FUSE mount that never answers): killed after the limit, whatever its state."""
    null = os.open(os.devnull, os.O_RDWR)
    fifo = tmp_path / "never"
    os.mkfifo(fifo)
    fields = (b"", b"", b"/", b"/bin/true", b"", b"1", bytes(fifo), b"1", b"true")
    try:
        answer = _ask(channel, b"S" + _request(*fields), [null] * 3).decode().split()
    finally:
        os.close(null)
    assert answer[:3] == ["E", "timeout", "110"]
    _, status = os.waitpid(int(answer[3]), 0)
    assert os.WTERMSIG(status) == signal.SIGKILL


def test_half_an_account_is_refused(channel: socket.socket) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for uid, gid in ((b"65534", b""), (b"", b"65534")):  # never root's groups by accident
            fields = (uid, gid, b"/", b"/bin/true", b"", b"0", b"1", b"true")
            assert _ask(channel, b"S" + _request(*fields), [null] * 3) == b"E request 22 0"
    finally:
        os.close(null)
