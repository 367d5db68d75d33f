"""Bad input to jobctl is a usage error (exit 2) naming the argument, never an internal error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jobctl_support import Jobctl, Server


@pytest.fixture(scope="module")
def ctl(shared_jobd: Server, pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Jobctl:
    return Jobctl(shared_jobd.target, pki, tmp_path_factory.mktemp("home"))


_FF = os.fsdecode(b"\xff")  # a byte that is not UTF-8, as the shell's $'\xff' passes it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("start", "--", "echo", _FF), r"Invalid value for 'ARG': '\xff' is not valid UTF-8"),
        (("start", "--", f"echo{_FF}"), r"Invalid value for 'CMD': 'echo\xff' is not valid UTF-8"),
        (("start", "--cmd", "echo", "--args", _FF), r"'--args': '\xff' is not valid UTF-8"),
        (("run", "--envs", f"A={_FF}", "--", "true"), r"'--envs': 'A=\xff' is not valid UTF-8"),
        (("start", "--dir", f"/tmp/{_FF}", "--", "true"), r"'--dir': '/tmp/\xff' is not valid"),
        (("status", "99999999999999999999999"), "too large (job ids are non-negative integers"),
        (("stop", "18446744073709551616"), "too large"),
        (("output", "99999999999999999999999"), "too large"),
        (("status", "-1"), "'-1' is not a job id: job ids are non-negative integers"),
        (("stop", "-1"), "'-1' is not a job id"),
        (("output", "-7"), "'-7' is not a job id"),
        (("start", "--envs", "A B=1", "--", "true"), "'A B=1' is not NAME=VALUE with a NAME"),
        (("start", "--envs", "1A=1", "--", "true"), "'1A=1' is not NAME=VALUE"),
        (
            ("start", "--cmd", "echo", "hello"),
            "Unexpected 'hello' after --cmd echo: with --cmd, give each argument with --args "
            "(--cmd echo --args hello), or the whole command after -- (-- echo hello).",
        ),
    ],
)
def test_bad_input_is_a_usage_error(ctl: Jobctl, args: tuple[str, ...], message: str) -> None:
    result = ctl(*args)
    assert result.code == 2, result
    assert message in result.stderr, result
    assert "jobctl failed" not in result.stderr


def test_the_largest_job_id_is_asked_for(ctl: Jobctl) -> None:
    result = ctl("status", str(2**64 - 1))
    assert (result.code, result.stderr) == (3, f"Job '{2**64 - 1}' not found.\n")
