"""A private OpenSSH server on 127.0.0.1 for the reference columns: own dir, keys, port, pid."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import PROCS

__all__ = ["CIPHER", "PrivateSshd", "ensure_openssh"]

CIPHER = "aes256-gcm@openssh.com"
_SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
_READY_TIMEOUT = 10.0


def _find_sshd() -> str | None:
    found = shutil.which("sshd")
    return found or next((p for p in _SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def ensure_openssh() -> tuple[str | None, str]:
    """The sshd path (installing openssh with apt-get when missing and allowed) and a note."""
    if _find_sshd() and shutil.which("ssh"):
        return _find_sshd(), ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "sshd is not installed and cannot be installed here (needs root + apt-get)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "openssh-server", "openssh-client"],
    ):
        done = subprocess.run(args, env=env, capture_output=True, timeout=300, check=False)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            return None, f"installing openssh failed ({' '.join(args[:2])}): {' '.join(tail)}"
    sshd = _find_sshd()
    return (sshd, "") if sshd and shutil.which("ssh") else (None, "openssh installed no sshd")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30
    )


@dataclass
class PrivateSshd:
    """An sshd that only this benchmark knows of; never the system's. Use as a context manager."""

    sshd: str
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateSshd:
        self.root.mkdir(parents=True, exist_ok=True)
        _keygen(self.root / "host_key")
        _keygen(self.root / "user_key")
        auth = self.root / "authorized_keys"
        shutil.copy(self.root / "user_key.pub", auth)
        auth.chmod(0o600)
        self.port = _free_port()
        config = self.root / "sshd_config"
        config.write_text(self._config(auth))
        _privsep_dir()
        log = (self.root / "sshd.log").open("wb")
        self.proc = PROCS.popen([self.sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self.proc is not None:
            PROCS.end(self.proc)
            self.proc = None

    def _config(self, auth: Path) -> str:
        return "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {self.port}",
                f"HostKey {self.root / 'host_key'}",
                f"AuthorizedKeysFile {auth}",
                "PidFile none",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "StrictModes no",  # the temp dir's modes are ours, not a user's home
                f"Ciphers {CIPHER}",
                "PrintMotd no",
                # bash reads ~/.bashrc for commands run by sshd unless it is a nested shell; a
                # heavy .bashrc (pyenv init: ~100 ms here) is not ssh's cost, so skip it.
                "SetEnv SHLVL=1",
                "LogLevel ERROR",
                "",
            ]
        )

    def _wait_ready(self) -> None:
        """Until `ssh ... true` succeeds: listening and accepting our key."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                break
            done = subprocess.run(
                [*self.ssh(), "true"], capture_output=True, timeout=_READY_TIMEOUT, check=False
            )
            if done.returncode == 0:
                return
            time.sleep(0.1)
        log = (self.root / "sshd.log").read_text(errors="replace")
        raise RuntimeError(f"private sshd did not accept a login: {log.strip()[-300:]}")

    def ssh(self) -> list[str]:
        """The ssh command line up to the remote command: fresh handshake, no user config."""
        return [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.root / "user_key"),
            "-p",
            str(self.port),
            "-c",
            CIPHER,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "127.0.0.1",
        ]


def _privsep_dir() -> None:
    """sshd run as root insists on its privilege-separation directory, as its service makes it."""
    path = Path("/run/sshd")
    if os.geteuid() == 0 and not path.exists():
        path.mkdir(mode=0o755, parents=True)
