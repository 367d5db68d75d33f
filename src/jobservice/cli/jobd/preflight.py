"""Checks before `jobd serve` serves: the data dir is its alone, the certificate a server's."""

from __future__ import annotations

import fcntl
import logging
import os
import ssl
from pathlib import Path

import click

from jobservice.security import tls
from jobservice.security.errors import SecurityError

__all__ = ["check_server_certificate", "lock_data_dir", "warn_about_exposure"]

log = logging.getLogger("jobservice.jobd")


def lock_data_dir(data_dir: Path) -> int:
    """Create `data_dir` if needed and hold an exclusive lock on it for this process's life.

    Two jobd on one directory would hand out the same job ids and write the same logs (every
    Start of the second failed with `File exists`). The lock is flock(2) on the directory
    itself: nothing is written into a directory jobd may yet refuse, and the kernel drops the
    lock when the process ends, however it ends. The holder's pid, for the message, comes from
    /proc/locks. Returns the descriptor to keep open.
    """
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        reason = exc.strerror or exc
        raise click.ClickException(f"cannot use data directory {data_dir}: {reason}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _lock_holder(os.fstat(fd))
        os.close(fd)
        raise click.ClickException(
            f"data directory {data_dir} is in use by another jobd (pid {holder}); stop that "
            "one first, or give this one a --data-dir of its own"
        ) from None
    return fd


def _lock_holder(st: os.stat_result) -> str:
    """The pid holding a flock on the file `st` describes, from /proc/locks; "unknown" if none.

    A line reads `1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF` (pid, then the device as
    hex major:minor and the inode).
    """
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        fields = line.split()
        if "FLOCK" in fields and device in fields:
            return fields[fields.index(device) - 1]
    return "unknown"


def check_server_certificate(ca: Path, cert: Path, key: Path) -> None:
    """Refuse a certificate no client would accept from a server: the wrong purpose (a user's
    clientAuth-only certificate) or not issued by --ca.

    Checked as a client checks it, by a handshake in memory with our own server context: the
    same OpenSSL verification (chain to --ca, validity, the `sslserver` purpose), without the
    server name, which is the client's to choose.
    """
    try:
        server = tls.server_context(ca=ca, cert=cert, key=key)
    except SecurityError as exc:
        raise click.ClickException(f"refusing to start: {exc}") from None
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    try:
        client.load_verify_locations(cafile=str(ca))
    except (OSError, ssl.SSLError) as exc:
        raise click.ClickException(f"refusing to start: cannot use --ca {ca}: {exc}") from None
    problem = _handshake_problem(server, client)
    if problem is not None:
        raise click.ClickException(
            f"refusing to start: {cert} cannot serve clients: {problem}. It needs the "
            "serverAuth extended key usage (a user's certificate has clientAuth only), the "
            "server's names, and to be issued by --ca; `jobd pki add-server` makes one"
        )


def _handshake_problem(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """The client's verification error for the server's certificate, or None if it passed."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(to_server, to_client, server_side=True)
    c = client.wrap_bio(to_client, to_server, server_side=False)
    for _ in range(10):  # a TLS 1.3 handshake is done in two or three flights
        try:
            c.do_handshake()
            return None  # the client accepted the server: what is checked here
        except ssl.SSLCertVerificationError as exc:
            return str(exc.verify_message)
        except ssl.SSLWantReadError:
            pass
        try:
            s.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError:
            return None  # the server's side (no client certificate here) is not the question
    return None


def warn_about_exposure(key: Path) -> None:
    """Warn (not refuse: the operator may have reasons) about a key others may read.

    Running as root is what confinement needs (jobs then run as --run-as, nobody by default);
    the confinement options warn when jobs would run as jobd's own account.
    """
    mode = key.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning(
            "server key %s is accessible by others (mode %04o): anyone who can read it can "
            "impersonate this server; chmod 600 %s",
            key,
            mode,
            key,
        )
