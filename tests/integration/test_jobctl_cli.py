"""jobctl as a program: help that teaches, version, completion, usage errors, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from jobctl_support import JOBCTL, Result, finish


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    proc = subprocess.Popen(
        [str(JOBCTL), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    return finish(proc, args)


def test_help_teaches() -> None:
    top = _run("--help")
    assert top.code == 0
    for text in ("Examples", "jobctl start -- sleep 10000", "Exit status:", "_JOBCTL_COMPLETE"):
        assert text in top.stdout
    for verb in ("start", "stop", "status", "output", "list", "run"):
        result = _run(verb, "--help")
        assert result.code == 0
        assert f"Usage: jobctl {verb}" in result.stdout


def test_version() -> None:
    assert _run("--version").stdout == "jobctl, version 0.1.0\n"


def test_shell_completion() -> None:
    script = _run(env={"_JOBCTL_COMPLETE": "bash_source"})
    assert script.code == 0
    assert "_jobctl_completion" in script.stdout
    words = _run(
        env={"_JOBCTL_COMPLETE": "bash_complete", "COMP_WORDS": "jobctl st", "COMP_CWORD": "1"}
    )
    assert {line.split(",")[1] for line in words.stdout.splitlines()} == {"start", "status", "stop"}


@pytest.mark.parametrize(
    "args",
    [
        ("frobnicate",),
        ("status",),
        ("status", "x"),
        ("stop", "-1"),
        ("output", "1", "--offset", "x"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.code == 2
    assert "Error:" in result.stderr


def test_help_and_usage_do_not_load_the_network_stack() -> None:
    """What keeps `jobctl --help` instant and `jobctl status` fast: heavy imports are lazy."""
    heavy = ("asyncio", "grpclib", "google.protobuf", "cryptography", "jobservice.api")
    code = (
        "import sys; from jobservice.cli.jobctl import main; main(['--help']);"
        f"print([m for m in {heavy!r} if m in sys.modules], file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "[]"


def _modules_after(code: str, prefixes: tuple[str, ...]) -> list[str]:
    """Run `code` in a fresh interpreter; the loaded modules that start with one of `prefixes`."""
    probe = (
        f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1:]


def test_a_verb_loads_only_its_own_module() -> None:
    """`jobctl --help` lists every verb without importing any; a verb imports only its own."""
    names = ("list", "output", "run", "start", "status", "stop")
    verbs = tuple(f"jobservice.cli.jobctl.{name}" for name in names)
    main = "from jobservice.cli.jobctl import main\nmain([{}])"
    assert _modules_after(main.format("'--help'"), verbs) == ["[]"]
    loaded = _modules_after(main.format("'status', '--help'"), verbs)
    assert loaded == ["['jobservice.cli.jobctl.status']"]


def test_only_the_program_tunes_the_garbage_collector() -> None:
    """As a program, jobctl collects cycles rarely and freezes all at exit (docs/cli.md)."""
    check = (
        "import atexit, gc, sys\n"
        "from jobservice.cli.jobctl import PROGRAM_GC_THRESHOLD, main\n"
        "assert 'click' not in sys.modules, 'tune before the imports'\n"
        "before = gc.get_threshold()\n"
        "main(['--version'])\n"
        "assert gc.get_threshold() == before, 'an in-process call must not tune the collector'\n"
        "sys.argv = ['jobctl', '--version']\n"
        "main()\n"
        "assert gc.isenabled() and gc.get_threshold()[0] == PROGRAM_GC_THRESHOLD\n"
        "atexit._run_exitfuncs()\n"
        "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()\n"
        "print('tuned')"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("tuned\n")
