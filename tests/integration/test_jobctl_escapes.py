"""Text from other users reaches a jobctl user's terminal escaped, never as escape sequences."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from jobctl_support import JOBCTL, Jobctl, Server
from termhelp import Terminal, needs_tmux

# Set the window title, move up a row, erase it: what a hostile command line would do.
_HOSTILE = "\x1b]0;pwned\x07\x1b[1A\x1b[2K"
# Any control character but the newline that ends each line.
_CONTROL_BYTES = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


def test_list_escapes_another_users_command(ctl: Jobctl) -> None:
    job = ctl.start("echo", _HOSTILE, "ok\u202etxt.exe", user="alice")
    shown = ctl("list", user="charlie")  # through a pipe, as `jobctl list | less -R` would
    assert shown.code == 0, shown
    assert not _CONTROL_BYTES.search(shown.out), shown.out
    (row,) = [line for line in shown.stdout.splitlines() if line.startswith(f"{job} ")]
    # As bash's $'...' quoting: pasted into a shell, it is the same words again.
    assert row.endswith("echo $'\\e]0;pwned\\x07\\e[1A\\e[2K' $'ok\\u202etxt.exe'"), row
    words = subprocess.run(
        ["bash", "-c", f'for w in {row.split("  ")[-1]}; do printf "%s\\0" "$w"; done'],
        capture_output=True,
        check=True,
    ).stdout
    assert words == f"echo\0{_HOSTILE}\0ok\u202etxt.exe\0".encode()


def test_error_messages_from_the_server_are_escaped(ctl: Jobctl) -> None:
    refused = ctl("start", "--", f"no-such{_HOSTILE}")
    assert refused.code == 6, refused
    assert not _CONTROL_BYTES.search(refused.err), refused.err
    assert "no-such\\x1b]0;pwned\\x07" in refused.stderr


@needs_tmux
def test_a_terminal_keeps_its_title_and_rows(ctl: Jobctl, tmp_path: Path) -> None:
    ctl.start("echo", _HOSTILE, "in-a-terminal", user="alice")
    term = Terminal(tmp_path, {**os.environ, **ctl.env("charlie")})
    try:
        title_before = term.title()
        term.type("echo first-row-kept")
        term.type(f"{shlex.quote(str(JOBCTL))} list; echo $((40 + 2))-done")
        screen = term.wait_for("42-done")
        assert "first-row-kept\n" in screen
        assert "in-a-terminal" in screen
        assert term.title() == title_before != "pwned"
    finally:
        term.hang_up()
