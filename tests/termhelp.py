"""A real terminal for tests: an interactive shell in a private tmux server, closed at will."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["Terminal", "needs_tmux"]

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Terminal:
    """`bash -i` in a tmux pane of its own server (socket under `workdir`), as a user's terminal.

    Closing it (`hang_up`) kills the tmux server: the pane's shell gets SIGHUP, as when a
    terminal window is closed, and an interactive bash passes SIGHUP on to its jobs.
    """

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.socket = workdir / "tmux.sock"
        self._tmux("-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50",
                   "bash --norc --noprofile -i", env=env)  # fmt: skip

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=10,
            check=True,
        )
        return done.stdout

    def type(self, line: str) -> None:
        """Type `line` and Enter into the shell."""
        self._tmux("send-keys", "-l", line)
        self._tmux("send-keys", "Enter")

    def press(self, key: str) -> None:
        """Press one key, as tmux names it (C-c is Ctrl-C)."""
        self._tmux("send-keys", key)

    def title(self) -> str:
        """The pane's title, as escape sequences written to the terminal may set it."""
        return self._tmux("display-message", "-p", "#{pane_title}").strip()

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p")

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """The screen, once it shows `text`; a test failure if it does not in time."""
        deadline = time.monotonic() + timeout
        while text not in (screen := self.screen()):
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not on the terminal within {timeout} s:\n{screen}")
            time.sleep(0.05)
        return screen

    def hang_up(self) -> None:
        """Close the terminal: SIGHUP to the shell and, through it, to its jobs."""
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], check=False, timeout=10)
