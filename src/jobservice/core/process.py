"""Process control, the one module that touches the OS: spawn, signal a group, reap.

Every job is the leader of its own session and process group. The leader is reaped only by
`ProcessGroup.reap`, and the group is signalled only before that, while the leader (alive or a
zombie) still holds the group id, so a signal can never reach a recycled group. A confined job
also has a cgroup, entered before its own code runs (the spawner's child enters it between
clone and exec): then signals and the final kill go to every process in the cgroup, however it
detached from the group.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from jobservice.core.confine.account import Account
from jobservice.core.confine.base import JobCgroup
from jobservice.core.confine.spawnd import interpreter_of
from jobservice.core.confine.spawner import Spawner, SpawnOrder, SpawnRefused, shown_interpreter
from jobservice.core.errors import (
    CommandNotExecutable,
    CommandNotFound,
    DirectoryNotFound,
    SpawnFailed,
)
from jobservice.core.model import ExitStatus
from jobservice.core.spec import JobSpec, directory_error, not_on_path

__all__ = ["ProcessGroup", "group_members", "live_processes", "spawn", "spawn_confined"]

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# A larger pipe lets a chatty job run ahead between our reads instead of blocking on a full pipe.
PIPE_SIZE = 1 << 20


@dataclass(eq=False)
class ProcessGroup:
    """A spawned job: its leader's pid (= group id), a pidfd to watch, and its output pipes."""

    pid: int
    pidfd: int
    stdout_fd: int
    stderr_fd: int
    _popen: subprocess.Popen[bytes] | None = field(repr=False)  # None: started by the spawner
    cgroup: JobCgroup | None = None
    reaped: bool = False
    stdin_fd: int | None = None  # the write end of the job's stdin pipe, if it has one
    _emptied: bool = False  # its cgroup was seen empty after the leader's end: it stays so

    def signal(self, sig: int) -> None:
        """Send `sig` to every process of the job: its group while it has one, and its cgroup.

        The group too: it is all there is of an unconfined job, and costs nothing otherwise.
        """
        if not self.reaped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
        if self.cgroup is not None:
            self.cgroup.signal(sig)

    def kill(self) -> None:
        """SIGKILL every process of the job (its whole cgroup at once, when it has one)."""
        if self.cgroup is None:
            self.signal(signal.SIGKILL)
            return
        if not self.reaped:  # the leader, should it not be in its cgroup yet
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.cgroup.kill()  # the whole cgroup at once, forks racing with the kill included

    def reap(self) -> ExitStatus:
        """Kill what is left of the group, then reap the (exited) leader and return its status.

        The leader has exited when this is called (its pidfd became readable). Processes it left
        behind in its group die with it, so a job's pipes reach end-of-file and nothing outlives it.
        """
        if self.cgroup is None:
            self.kill()
        else:  # the leader has exited: it no longer counts in the group, zombie or not
            self._emptied = not self.cgroup.populated()
            if not self._emptied:  # writing cgroup.kill waits in the kernel (~0.3 ms here)
                self.kill()
        try:
            _, status = os.waitpid(self.pid, 0)
            result = ExitStatus.from_wait_status(status)
        except ChildProcessError:  # reaped by someone else: the status is lost
            result = ExitStatus(code=255)
        self.reaped = True
        if self._popen is not None:
            self._popen.returncode = result.shell_code  # tell subprocess it need not reap it
        os.close(self.pidfd)
        return result

    def populated(self) -> bool:
        """Whether a process of the job's cgroup lives (False without a cgroup).

        Once the leader has exited and the group has been seen empty, nothing can join it (only
        a process inside could fork into it), so the answer is kept: no more reads.
        """
        if self.cgroup is None or self._emptied:
            return False
        populated = self.cgroup.populated()
        self._emptied = self.reaped and not populated
        return populated

    def survivors(self) -> list[int]:
        """Pidfds of processes still in the group after `reap` (SIGKILLed, not yet dead).

        SIGKILL takes effect when its target next runs, so a loaded host can show members of the
        group alive for a moment after the leader was reaped; a job is over only when they are
        gone. Signal 0 signals nothing, so this breaks no rule about reaped groups. In a cgroup,
        they are its processes (SIGKILLed by `reap` however they detached).
        """
        if self.cgroup is not None:
            return _pidfds(self.cgroup.pids()) if self.populated() else []
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return []  # the usual case: the group is already empty
        except PermissionError:
            pass
        return _pidfds(group_members(self.pid))

    def close_pipe(self, fd: int) -> None:
        """Close one of the output pipes (after end-of-file, or when giving up on it)."""
        if self._popen is None:
            if fd in (self.stdout_fd, self.stderr_fd):
                os.close(fd)
            return
        for f in (self._popen.stdout, self._popen.stderr):
            if f is not None and not f.closed and f.fileno() == fd:
                f.close()


def _pidfds(pids: list[int]) -> list[int]:
    pidfds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            pidfds.append(os.pidfd_open(pid))
    return pidfds


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in group `pgid`, read from /proc: the rare slow path."""
    return [pid for pid, group in live_processes() if group == pgid]


def live_processes() -> Iterator[tuple[int, int]]:
    """(pid, process group id) of every live (not zombie) process on the host, from /proc."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # it exited while we looked
        if fields[0] not in (b"Z", b"X"):
            yield int(name), int(fields[2])


def spawn(spec: JobSpec) -> ProcessGroup:
    """Start `spec` as jobd's own account, unconfined, in a new session and process group.

    Its stdin is /dev/null, or a pipe (`stdin_fd`, ours to own) when `spec.stdin` asks for one.
    """
    try:
        popen = _popen([spec.command, *spec.args], spec.executable, spec.dir, spec.env, spec.stdin)
    except OSError as e:
        raise _spawn_error(spec, e) from None
    assert popen.stdout is not None
    assert popen.stderr is not None
    stdin_fd = None
    if popen.stdin is not None:  # owned by the caller from here on (StdinPipe closes it)
        stdin_fd = os.dup(popen.stdin.fileno())
        popen.stdin.close()
    try:
        return _watched(popen.pid, popen.stdout.fileno(), popen.stderr.fileno(), stdin_fd, popen)
    except OSError:
        popen.kill()
        popen.wait()
        raise


async def spawn_confined(
    spawner: Spawner, spec: JobSpec, cgroup: JobCgroup | None, account: Account | None
) -> ProcessGroup:
    """Start `spec` through the spawner: in `cgroup` and as `account` before any of its code.

    As `spawn` otherwise (its own session, output to pipes). Not cancellable half-way: a caller
    that may be cancelled shields it and disposes of the group it did not take (`abandon`).
    """
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if spec.stdin else (spawner.devnull, -1)
    order = SpawnOrder(
        executable=spec.executable,
        argv=[spec.command, *spec.args],
        directory=spec.dir,
        env=spec.env,
        account=account,
        procs_files=cgroup.procs_files if cgroup is not None else (),
        stdin=in_r,
        stdout=out_w,
        stderr=err_w,
        path=spec.path,
    )
    try:
        pid = await spawner.spawn(order)
    except BaseException as e:
        for fd in (out_r, err_r, in_w):
            _close(fd)
        if isinstance(e, SpawnRefused):
            raise _refusal(spec, e) from None
        raise
    finally:  # the job (or the spawner) has its own copies of these
        for fd in (out_w, err_w) + ((in_r,) if spec.stdin else ()):
            os.close(fd)
    group = _watched(pid, out_r, err_r, in_w if spec.stdin else None, None)
    group.cgroup = cgroup
    return group


def abandon(group: ProcessGroup) -> None:
    """Kill and reap a job nobody will watch (its start was cancelled); blocks briefly."""
    group.kill()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(group.pid, 0)
    group.reaped = True
    for fd in (group.stdout_fd, group.stderr_fd, group.stdin_fd, group.pidfd):
        if fd is not None:
            _close(fd)


def _watched(
    pid: int, stdout: int, stderr: int, stdin: int | None, popen: subprocess.Popen[bytes] | None
) -> ProcessGroup:
    """The group of a just-started leader, with a pidfd to watch it and its pipes made ready."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as e:  # pragma: no cover - kernels older than 5.3
        raise SpawnFailed(f"cannot watch the process: {e.strerror}") from None
    for fd in (stdout, stderr):
        os.set_blocking(fd, False)
        with contextlib.suppress(OSError):  # only an optimisation; the default size still works
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
    return ProcessGroup(pid, pidfd, stdout, stderr, popen, stdin_fd=stdin)


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _popen(
    argv: list[str], executable: str, cwd: str, env: dict[str, str], stdin: bool
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        executable=executable,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        restore_signals=True,
    )


def _refusal(spec: JobSpec, e: SpawnRefused) -> Exception:
    """The library's error for a job the spawner could not start (the same as from `spawn`)."""
    if e.stage == "dir":  # found by the job's account, worded as jobd's own check words it
        return directory_error(spec.dir, e.errno or 0, e.strerror or "")
    if e.stage == "exec" and not spec.executable:
        return _search_refusal(spec, e)
    if e.stage == "interp":  # the file exists, but the program its #! line names does not
        return _bad_interpreter(spec.command, e.interpreter, e)
    if e.stage == "exec":
        return _exec_error(spec, e)
    cannot = f"cannot start {spec.command}"
    what = {
        "cgroup": f"cannot enter the job's cgroup: {e.strerror}",
        "account": f"cannot switch to the job's account: {e.strerror}",
        # Killed by the spawner before exec, rather than waited for with every start behind it.
        "stopped": f"{cannot}: a signal stopped it before it could run, so it was killed (any "
        "process of the account it runs as may signal it)",
        "timeout": f"{cannot}: it had not started after 10 s (its directory or a directory on "
        "its PATH did not answer), so it was killed",
    }
    return SpawnFailed(what.get(e.stage, f"{cannot} ({e.stage}): {e.strerror}"))


def _search_refusal(spec: JobSpec, e: OSError) -> Exception:
    """As spec.resolve_command words it, but searched by the job's account."""
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return not_on_path(spec.command, spec.path)
    return CommandNotExecutable(f"cannot execute {spec.command}: {e.strerror}")


def _spawn_error(spec: JobSpec, e: OSError) -> Exception:
    """Translate an exec/chdir failure of a job run as jobd's own account (so jobd may read
    its file) into the library's errors."""
    if e.errno == errno.ENOENT and e.filename != spec.dir:
        interpreter = shown_interpreter(interpreter_of(spec.executable))
        if interpreter is not None:  # a script: its #! line names what does not exist
            return _bad_interpreter(spec.command, interpreter, e)
    return _exec_error(spec, e)


def _bad_interpreter(command: str, interpreter: str | None, e: OSError) -> Exception:
    if interpreter is None:  # a file the job's account may run but not read: it cannot tell
        return CommandNotExecutable(f"cannot execute {command}: {e.strerror}")
    return CommandNotExecutable(
        f"cannot execute {command}: bad interpreter {interpreter}: {e.strerror}"
    )


def _exec_error(spec: JobSpec, e: OSError) -> Exception:
    """Translate an exec/chdir failure reported by the child into the library's errors."""
    if e.filename == spec.dir:  # the child failed at chdir
        return DirectoryNotFound(f"cannot enter directory {spec.dir}: {e.strerror}")
    if e.errno == errno.ENOENT:
        return CommandNotFound(f"command not found: {spec.command}")
    if e.errno in (errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR, errno.ENOTDIR):
        return CommandNotExecutable(f"cannot execute {spec.command}: {e.strerror}")
    return SpawnFailed(f"cannot start {spec.command}: {e.strerror}")
