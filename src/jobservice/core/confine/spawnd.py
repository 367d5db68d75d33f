"""The spawner: a small process of jobd's that starts confined jobs. Standard library only.

jobd runs this file as `python -I -S spawnd.py FD` when the compiled spawner (spawnd.c, the
same protocol) was not built. FD is its end of a SOCK_SEQPACKET socketpair; jobd talks to it
with `spawner.Spawner`. Requests, each answered in the order asked:

- `S` + REQUEST, with the job's stdin, stdout and stderr as descriptors (or `M` with a memfd
  holding REQUEST before them, for a request too large for one message): start a job. Answer
  `P PID` once it has exec'd, or `E STAGE ERRNO PID` when its first process failed before
  exec (that process has exited with status 127; jobd reaps it), or was found stopped before
  exec and killed (STAGE `stopped`). STAGE `interp:HEX` says that the file to run is a script
  whose #! line names a program that does not exist: HEX is that program's name, hex-encoded,
  as the job's account read it (empty if it may not read the file, so cannot tell). A
  malformed request is answered `E request 22 0`.
- `F` + N + FILES... + DIRS... (NUL-terminated): once a job has ended, read its N usage files
  then remove its cgroup directories. Answer `F ERRNO` (0, or the first rmdir's failure), then
  each file's contents (empty if missing), NUL-terminated.

Why a process of its own: the job's first process must enter its cgroups and switch account
before it runs any code of the job's. Python can do that in a child only if the parent is
single-threaded (jobd is not), and an exec'd helper (a Perl trampoline, until this) costs a
whole interpreter start per job. Here the child is a copy of this small process, cloned with
CLONE_PARENT so that it is jobd's child, not ours: jobd watches, signals and reaps it exactly
as a job it forked itself. In the child, before exec: write "0" into each cgroup.procs (enter
the cgroup), setsid, setgroups([gid]) + setresgid + setresuid, chdir (as the job's account, so a
directory the account may not enter is refused), the job's fds on 0-2, execve. Every other fd
here is close-on-exec.

REQUEST: NUL-terminated fields
    UID GID DIR EXECUTABLE PATH NPROCS PROCS... NARGV ARGV... ENV...
UID and GID are empty to keep this process's own; EXECUTABLE is empty to search PATH for
ARGV[0] (as execvp does, as the job's account); ENV runs to the end (NAME=VALUE each).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import select
import signal
import socket
import sys

__all__ = ["interpreter_of", "main"]

_MAX_MESSAGE = 1 << 16  # jobd sends larger requests in a memfd
_STOPPED_CHECK_MS = 1000  # a child not exec'd by then is looked at: is it stopped?
_LIMIT = 10  # seconds: a child not exec'd by then is killed, stopped or not (argv[2] may say)
_SCRIPT_HEAD = 256  # bytes of a script the kernel reads for its #! line
_INTERP_MAX = 129  # bytes of a #! name reported: jobd shows 128, and "..." when there are more
_CLONE_PARENT = 0x00008000
_SYS_CLONE3 = 435  # the same on every architecture (added in Linux 5.3)
# The old clone(2), for where clone3 is filtered out (seccomp profiles that answer ENOSYS). With
# every argument but the flags zero their order (which differs between architectures) is moot.
_SYS_CLONE = {"x86_64": 56, "aarch64": 220, "riscv64": 220, "s390x": 120, "ppc64le": 120}
_ENOSYS = 38


class _CloneArgs(ctypes.Structure):
    # struct clone_args (linux/sched.h), CLONE_ARGS_SIZE_VER0: the fields up to tls.
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags",
            "pidfd",
            "child_tid",
            "parent_tid",
            "exit_signal",  # 0: with CLONE_PARENT the child's exit signal is ours (SIGCHLD)
            "stack",  # 0: the child runs on a copy of our stack, as after fork
            "stack_size",
            "tls",
        )
    ]


class Cloner:
    """fork(), except that the child's parent is our parent (jobd): clone3 or clone."""

    def __init__(self, *, clone3: bool = True) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._args = _CloneArgs(flags=_CLONE_PARENT)
        self._size = ctypes.c_size_t(ctypes.sizeof(self._args))
        self._old = _SYS_CLONE.get(os.uname().machine)
        self._use_clone3 = clone3  # False: straight to clone(2) (tests; it finds out itself)

    def clone(self) -> int:
        """0 in the child, its pid here; OSError if it could not be made."""
        if self._use_clone3:
            pid = int(self._libc.syscall(_SYS_CLONE3, ctypes.byref(self._args), self._size))
            if pid >= 0 or ctypes.get_errno() != _ENOSYS or self._old is None:
                return self._checked(pid)
            self._use_clone3 = False
        if self._old is None:
            raise OSError(_ENOSYS, "clone3 is not available on this machine")
        zero = ctypes.c_long(0)
        flags = ctypes.c_long(_CLONE_PARENT)
        return self._checked(int(self._libc.syscall(self._old, flags, zero, zero, zero, zero)))

    @staticmethod
    def _checked(pid: int) -> int:
        if pid < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return pid


# uid, gid (None: keep ours), directory, executable ("": search path), path, cgroup.procs
# files, argv, env
Request = tuple[
    int | None, int | None, bytes, bytes, bytes, list[bytes], list[bytes], dict[bytes, bytes]
]


def parse(request: bytes) -> Request:
    """The fields of a request (ValueError if it is malformed)."""
    fields = request.split(b"\0")
    if fields and fields[-1] == b"":
        fields.pop()
    uid, gid, directory, executable, path = fields[:5]
    nprocs = _number(fields[5], len(fields) - 7)
    procs = fields[6 : 6 + nprocs]
    at = 6 + nprocs
    nargv = _number(fields[at], len(fields) - at - 1)
    argv = fields[at + 1 : at + 1 + nargv]
    env = {}
    for entry in fields[at + 1 + nargv :]:
        name, _, value = entry.partition(b"=")
        env[name] = value
    if not argv:
        raise ValueError("no argv")
    if bool(uid) != bool(gid):
        raise ValueError("a uid without a gid, or the reverse")
    ids = (_number(uid) if uid else None, _number(gid) if gid else None)
    return (*ids, directory, executable, path, procs, argv, env)


def _number(field: bytes, most: int = 0xFFFFFFFE) -> int:
    """A decimal count or id no larger than `most` (ValueError otherwise: int() alone would
    take a sign, spaces and underscores)."""
    if not field.isdigit() or int(field) > most:
        raise ValueError(f"not a number up to {most}: {field!r}")
    return int(field)


def _child(job: Request, stdio: list[int], report: int) -> None:
    """The job's first process: never returns (execs, or exits 127 saying where it failed)."""
    stage = "cgroup"
    try:
        uid, gid, directory, executable, path, procs, argv, env = job
        for procs_file in procs:
            fd = os.open(procs_file, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fd, b"0")  # 0: the writing process
            os.close(fd)
        stage = "session"
        os.setsid()
        if uid is not None and gid is not None:
            stage = "account"
            os.setgroups([gid])  # its own group only: none of ours
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        stage = "dir"
        os.chdir(directory)
        stage = "stdio"
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)  # the copy on 0-2 is inheritable; the original closes at exec
        stage = "exec"
        if executable:
            _exec(executable, argv, env)
        _exec_on_path(argv, path, env)
    except _Interpreter as e:
        os.write(report, f"interp:{(e.name or b'').hex()} {e.errno or 0}".encode())
    except OSError as e:
        os.write(report, f"{stage} {e.errno or 0}".encode())
    except BaseException:
        os.write(report, f"{stage} 0".encode())
    finally:
        os._exit(127)


def _exec_on_path(argv: list[bytes], path: bytes, env: dict[bytes, bytes]) -> None:
    """execve argv[0] from the first PATH entry that has it, as execvp: only raises.

    ENOENT for a file that exists means its #! interpreter does not: stop there (stage
    "interp"), as a shell says "bad interpreter" rather than searching on.
    """
    failure: OSError | None = None
    for entry in path.split(b":"):
        candidate = os.path.join(entry, argv[0])  # an empty entry: the directory we are in
        try:
            _exec(candidate, argv, env)
        except _Interpreter:
            raise  # found, but what it names is missing: a shell stops there too
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as e:
            failure = failure or e  # as execvp: the first file found but not executable
    raise failure or FileNotFoundError(2, "No such file or directory")


def _exec(file: bytes, argv: list[bytes], env: dict[bytes, bytes]) -> None:
    """execve; only raises. ENOENT for a script that exists means that the program its #!
    line names does not: _Interpreter, with that program's name as the job's account reads
    it (None: it may not read the file). Not a script (an ELF file whose loader is missing):
    the ENOENT as it is."""
    try:
        os.execve(file, argv, env)  # noqa: S606 - no shell: the job's own argv
    except (FileNotFoundError, NotADirectoryError) as e:
        if os.path.isfile(file):
            name = interpreter_of(file)
            if name != b"":
                raise _Interpreter(e.errno, e.strerror, name) from None
        raise


def interpreter_of(file: str | bytes) -> bytes | None:
    """The program a script's #! line names, parsed as the kernel does (at most _INTERP_MAX
    bytes); b"" if the file is not a script, None if it cannot be read."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        head = os.read(fd, _SCRIPT_HEAD)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not head.startswith(b"#!"):
        return b""
    line = head[2:].lstrip(b" \t")
    for stop in b" \t\n\0":
        line = line.split(bytes([stop]), 1)[0]
    return line[:_INTERP_MAX]


class _Interpreter(OSError):
    """A script whose #! names a program that is missing; `name`: that program's name (None:
    the job's account may not read the script)."""

    def __init__(self, errno: int | None, strerror: str | None, name: bytes | None) -> None:
        super().__init__(errno, strerror)
        self.name = name


def spawn(cloner: Cloner, request: bytes | None, fds: list[int], limit: int = _LIMIT) -> bytes:
    """Start the job one message describes (`request`, or None: in a memfd before the job's
    three fds); the answer for jobd."""
    try:
        if request is None:
            request = os.pread(fds[0], os.fstat(fds[0]).st_size, 0)
            fds = fds[1:]
        if len(fds) != 3:
            raise ValueError("not three fds")
        job = parse(request)
    except (OSError, ValueError, IndexError):
        return b"E request 22 0"
    stdio = fds
    readable, report = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            pid = cloner.clone()
        except OSError as e:
            return f"E clone {e.errno or 0} 0".encode()
        if pid == 0:
            _child(job, stdio, report)
        os.close(report)
        report = -1
        failure, killed = _await_exec(readable, pid, limit)
    finally:
        os.close(readable)
        if report >= 0:
            os.close(report)
    if killed:  # killed before exec: it exited, as a refused child does
        code = errno.EINTR if killed == "stopped" else errno.ETIMEDOUT
        return f"E {killed} {code} {pid}".encode()
    if failure:
        return b"E " + failure + f" {pid}".encode()
    return f"P {pid}".encode()


def _await_exec(readable: int, pid: int, limit: int) -> tuple[bytes, str]:
    """What the child reported before exec (nothing: it exec'd, the pipe closed at end of
    file), and why it had to be killed ("stopped", "timeout"), or "".

    Once the child has switched account, any process of that account may stop it (SIGSTOP)
    before it execs, or make it wait (a directory on the account's own FUSE mount that never
    answers); waiting for good would hold every start of every user behind it. So a child that
    has not exec'd after a second is looked at, and killed if it is stopped, or in any case
    after `limit` seconds. Its pid is not reused meanwhile: it is jobd's child, which reaps it
    only after our answer.
    """
    poller = select.poll()
    poller.register(readable, select.POLLIN)
    failure, killed, waited = b"", "", 0
    while True:
        if not poller.poll(_STOPPED_CHECK_MS):
            waited += 1
            if not killed:
                killed = "stopped" if _is_stopped(pid) else "timeout" if waited >= limit else ""
                if killed:
                    os.kill(pid, signal.SIGKILL)
            continue
        chunk = os.read(readable, 256)
        if not chunk:
            return failure, killed
        failure += chunk


def _is_stopped(pid: int) -> bool:
    """Whether the process is stopped (or traced): state T or t in its stat."""
    stat = _read(f"/proc/{pid}/stat".encode())
    return stat.rpartition(b")")[2][1:2] in (b"T", b"t")  # after the name, which may hold ")"


def finish(fields: list[bytes]) -> bytes:
    """Read a job's usage files, then remove its (empty) cgroup directories."""
    count = _number(fields[0], len(fields) - 1)
    contents = [_read(path) for path in fields[1 : 1 + count]]
    status = 0
    for path in fields[1 + count :]:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
        except OSError as e:
            status = status or e.errno or 0
    return b"\0".join([f"F {status}".encode(), *contents, b""])


def _read(path: bytes) -> bytes:
    # cgroupfs.read_bytes, again: this file runs on the standard library alone (python -I -S).
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read(4096)
    except OSError:
        return b""


def main() -> None:
    # What a job inherits from us: default dispositions (Python ignores SIGPIPE, and SIGXFSZ).
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    fd = int(sys.argv[1])
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else _LIMIT
    os.set_inheritable(fd, False)
    channel = socket.socket(fileno=fd)
    cloner = Cloner()
    # Nothing here makes cycles; a collection would touch every object, pages a clone then
    # copies. Keep the start-up's objects out of it for good.
    gc.disable()
    gc.freeze()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 4)
        except ConnectionError:
            return
        for fd in fds:  # close-on-exec: a job gets only its three (recv_fds ignores its flags)
            os.set_inheritable(fd, False)
        if not message:
            return  # jobd closed its end: it is shutting down (or gone)
        kind, body = message[:1], message[1:]
        try:
            if kind in (b"S", b"M"):
                reply = spawn(cloner, body if kind == b"S" else None, fds, limit)
            elif kind == b"F":
                try:
                    reply = finish(body.split(b"\0")[:-1])
                except (ValueError, IndexError):
                    reply = b"F 22\0"
            else:
                reply = b"E request 22 0"
        finally:
            for fd in fds:
                os.close(fd)
        channel.send(reply)


if __name__ == "__main__":
    main()
