"""jobd's side of the spawner (spawnd.py): start a job in its cgroups, as its account.

One spawner process per coordinator, started on first use and kept: a request is one message
on a SOCK_SEQPACKET socketpair with the job's request (a memfd) and its stdin, stdout and
stderr; the spawner clones a copy of itself that becomes *jobd's* child (CLONE_PARENT), enters
the cgroups, switches account, enters the directory and execs. Requests are answered in order,
so several may be in flight; each caller awaits its own answer on the event loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobservice.core.confine.account import Account
from jobservice.core.errors import SpawnFailed

__all__ = [
    "COMPILED",
    "SpawnOrder",
    "SpawnRefused",
    "Spawner",
    "SpawnerGone",
    "default_program",
    "python_program",
    "shown_interpreter",
]

log = logging.getLogger(__name__)

_PYTHON = Path(__file__).with_name("spawnd.py")
COMPILED = Path(__file__).with_name("jobd-spawnd")  # spawnd.c, built by `make dev`
_ANSWER_MAX = 1 << 16  # bytes: a finish's answer holds its usage files' contents
_INLINE = 60_000  # bytes: a larger request goes in a memfd (a message holds 64 KiB)
_IN_FLIGHT = 64  # requests sent and not yet answered, at most
_EXIT_WAIT = 5.0  # seconds the spawner has to exit at close before it is killed
_INTERPRETER_SHOWN = 128  # bytes of a #! name an error shows (the spawners report one more)


class SpawnerGone(SpawnFailed):
    """The spawner process exited or could not be started (the next start tries a new one)."""


class SpawnRefused(OSError):
    """The job's first process failed before exec: `stage` says where, errno why.

    `stage` is one of cgroup, session, account, dir, stdio, exec, interp, clone, request,
    stopped (a signal stopped it before exec; the spawner killed it rather than wait), or
    timeout (it had not exec'd after 10 s: killed). For interp (the file exists, the program
    its #! line names does not), `interpreter` is that program's name as the job's account
    read it: None if it may not read the file. jobd never reads the file itself (as root).
    """

    def __init__(
        self, stage: str, errno: int, filename: str | None, interpreter: str | None = None
    ) -> None:
        super().__init__(errno, os.strerror(errno) if errno else "failed", filename)
        self.stage = stage
        self.interpreter = interpreter


@dataclass(frozen=True, slots=True)
class SpawnOrder:
    """One job to start: what, where, as whom, in which cgroups, with which fds."""

    executable: str  # "" to search `path` for argv[0], as the job's account
    argv: Sequence[str]
    directory: str
    env: dict[str, str]
    account: Account | None  # None: jobd's own account
    procs_files: Sequence[Path]
    stdin: int
    stdout: int
    stderr: int
    path: str = ""

    def encode(self) -> bytes:
        """The request spawnd.parse reads: NUL-terminated fields."""
        uid, gid = ("", "") if self.account is None else (self.account.uid, self.account.gid)
        fields: list[bytes] = [
            str(uid).encode(),
            str(gid).encode(),
            os.fsencode(self.directory),
            os.fsencode(self.executable),
            os.fsencode(self.path),
            str(len(self.procs_files)).encode(),
            *map(os.fsencode, self.procs_files),
            str(len(self.argv)).encode(),
            *map(os.fsencode, self.argv),
            *(os.fsencode(f"{k}={v}") for k, v in self.env.items()),
        ]
        return b"".join(f + b"\0" for f in fields)


def default_program() -> list[str]:
    """The compiled spawner if `make dev` built it, else the Python one (slower per start)."""
    if os.access(COMPILED, os.X_OK):
        return [str(COMPILED)]
    return python_program()


def python_program() -> list[str]:
    """spawnd.py, run by this interpreter in isolated mode (no site, no environment)."""
    return [sys.executable, "-I", "-S", str(_PYTHON)]


class Spawner:
    """The spawner process and the requests in flight to it."""

    def __init__(self, program: Sequence[str] | None = None) -> None:
        # The command, to which the socket's fd is appended: default_program() unless given.
        self._program = list(program) if program is not None else default_program()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        # Answers come in the order of the requests: each waits with how to read its answer.
        self._waiting: collections.deque[tuple[asyncio.Future[Any], _Reader]] = collections.deque()
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._room = asyncio.Semaphore(_IN_FLIGHT)
        self._sending = asyncio.Lock()
        self._write_waiter: asyncio.Future[None] | None = None

    async def spawn(self, order: SpawnOrder) -> int:
        """Start the job; its pid once it has exec'd (it is our child: we reap it).

        SpawnRefused if its first process failed before exec (reaped here), SpawnerGone if the
        spawner is not there. Cancelling the await does not cancel the start: a caller that
        may be cancelled shields it and disposes of the job it did not take.
        """
        request = order.encode()
        stdio = [order.stdin, order.stdout, order.stderr]
        reader = functools.partial(_started, order.directory)
        if len(request) < _INLINE:
            answer = await self._ask(b"S" + request, stdio, reader)
        else:  # a large environment or argv: in a memfd, read by the spawner
            memfd = os.memfd_create("jobd-spawn", os.MFD_CLOEXEC)
            try:
                os.write(memfd, request)
                answer = await self._ask(b"M", [memfd, *stdio], reader)
            finally:
                os.close(memfd)
        pid: int = await answer
        return pid

    async def finish(self, files: Sequence[Path], dirs: Sequence[Path]) -> list[bytes]:
        """Read `files` (a job's usage), then rmdir each of `dirs` (gone already is fine), in
        the spawner: no thread of ours waits in the kernel. The files' contents (empty if
        missing); OSError if a directory could not be removed."""
        fields = [str(len(files)).encode(), *map(os.fsencode, (*files, *dirs))]
        message = b"F" + b"".join(f + b"\0" for f in fields)
        contents: list[bytes] = await (await self._ask(message, [], _finished))
        return contents

    async def _ask(self, message: bytes, fds: list[int], reader: _Reader) -> asyncio.Future[Any]:
        """Send a request (in the order asked) once there is room; its answer's future.

        At most `_IN_FLIGHT` requests wait for their answer at once: the socket's buffer, and
        the kernel's count of descriptors in flight, stay small however many starts arrive.
        """
        await self._room.acquire()
        try:
            # One sender at a time: the requests go in the order asked, and one task at a time
            # waits for the socket to be writable (the loop keeps one writer callback per fd).
            async with self._sending:
                channel = self._running()
                while True:
                    try:
                        socket.send_fds(channel, [message], fds)
                        break
                    except BlockingIOError:  # a full buffer: wait until the spawner reads
                        await self._writable(channel)
                    except OSError as e:
                        why = f"cannot reach the spawner: {e.strerror or e}"
                        self._lost(why)
                        raise SpawnerGone(why) from None
        except BaseException:
            self._room.release()
            raise
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((answer, reader))
        return answer

    async def _writable(self, channel: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = channel.fileno()
        loop.add_writer(fd, _set_once, ready)
        self._write_waiter = ready
        try:
            await ready
        finally:
            self._write_waiter = None
            if channel.fileno() == fd:  # not closed meanwhile (the spawner lost)
                loop.remove_writer(fd)

    @property
    def pid(self) -> int | None:
        """The spawner process's pid while it runs (it is started on first use)."""
        return self._process.pid if self._process is not None else None

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._waiting)

    @property
    def devnull(self) -> int:
        """/dev/null, read-only: the stdin of a job without one (the spawner gets a copy)."""
        return self._devnull

    def close(self) -> None:
        """End the spawner (end-of-file on its socket) and wait for it; idempotent."""
        self._lost("the spawner was closed")
        with contextlib.suppress(OSError):
            os.close(self._devnull)
        self._devnull = -1

    def _running(self) -> socket.socket:
        if self._channel is not None:
            return self._channel
        if self._devnull < 0:
            raise SpawnerGone("the spawner was closed")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [*self._program, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env={},  # it needs none, and the jobs it starts get only their own
                start_new_session=True,  # a terminal's ^C is for jobd, which closes it in order
            )
        except OSError as e:
            ours.close()
            raise SpawnerGone(f"cannot start the spawner: {e.strerror or e}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_answer)
        self._channel = ours
        log.info("spawner started: %s (pid %d)", " ".join(self._program), self._process.pid)
        if self._program == python_program() and not _uid_change_hides_memory():
            log.warning(
                "fs.suid_dumpable is not 0: a job's account can read spawnd.py's copy in its "
                "first process before exec (requests of other jobs included); build "
                "jobd-spawnd (make spawnd), which wipes each request"
            )
        return ours

    def _on_answer(self) -> None:
        assert self._channel is not None
        try:
            data = self._channel.recv(_ANSWER_MAX)
        except BlockingIOError:
            return
        except OSError as e:
            data = b""
            log.error("reading from the spawner: %s", e)
        if not data:
            self._lost("the spawner exited")
            return
        answer, reader = self._waiting.popleft()
        self._room.release()
        try:
            result = reader(data)  # also when nobody waits any more: a refusal reaps its child
        except Exception as e:  # the request's own failure, for its caller
            if not answer.done():
                answer.set_exception(e)
            return
        if not answer.done():  # done: its caller was cancelled (spawn's callers shield it)
            answer.set_result(result)

    def _lost(self, why: str) -> None:
        """Forget the spawner: fail what waits for it, and let the next spawn start another."""
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                loop = asyncio.get_running_loop()
                loop.remove_reader(channel.fileno())
                loop.remove_writer(channel.fileno())
            channel.close()
        if self._write_waiter is not None:  # its send fails next, on the closed socket
            _set_once(self._write_waiter)
        while self._waiting:
            answer, _ = self._waiting.popleft()
            self._room.release()
            if not answer.done():
                answer.set_exception(SpawnerGone(why))
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(_EXIT_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.returncode not in (0, None):
                log.warning("the spawner exited with status %s", process.returncode)


_Reader = Callable[[bytes], Any]  # an answer -> the result, or raises


def _started(directory: str, answer: bytes) -> int:
    """`P PID`, or `E STAGE[:HEX] ERRNO PID` (that process exited before exec: reaped here)."""
    fields = answer.decode("ascii", "replace").split()
    if fields[:1] == ["P"] and len(fields) == 2:
        return int(fields[1])
    stage, errno, pid = fields[1:4] if len(fields) == 4 else ("request", "0", "0")
    if pid.isdigit() and int(pid) > 0:
        _reap(int(pid))
    code = int(errno) if errno.isdigit() else 0
    stage, _, name = stage.partition(":")
    raise SpawnRefused(stage, code, directory if stage == "dir" else None, _unhex(name))


def shown_interpreter(name: bytes | None) -> str | None:
    """A #! name as an error shows it: at most 128 bytes ("..." after), and what does not
    print escaped (a script saved with CRLF names "/bin/sh\\r"). None stays None."""
    if not name:
        return None
    cut = "..." if len(name) > _INTERPRETER_SHOWN else ""
    text = name[:_INTERPRETER_SHOWN].decode("utf-8", "backslashreplace")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return shown + cut


def _unhex(name: str) -> str | None:
    """An interpreter's name from its hex (as the job's account wrote it: only shown)."""
    try:
        return shown_interpreter(bytes.fromhex(name))
    except ValueError:
        return None


def _finished(answer: bytes) -> list[bytes]:
    """`F ERRNO` and each file's contents, NUL-terminated."""
    status, *contents = answer.split(b"\0")[:-1]
    code = int(status[2:] or b"0")
    if code:
        raise OSError(code, os.strerror(code))
    return contents


def _set_once(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _uid_change_hides_memory() -> bool:
    """Whether the kernel makes a process that changes its uid undumpable (spawnd.c says why)."""
    try:
        with open("/proc/sys/fs/suid_dumpable", "rb") as f:
            return f.read(8).strip() == b"0"
    except OSError:
        return False


def _reap(pid: int) -> None:
    """Reap a first process said to have exited before exec. SIGKILL first: where the job's
    account can write into its child's report (fs.suid_dumpable not 0), a refusal may be a
    lie about a job that went on to exec, and waiting for it would block the event loop. It
    is our unreaped child, so its pid is not someone else's."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
