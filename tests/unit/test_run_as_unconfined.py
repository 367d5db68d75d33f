"""Run-as without cgroups: the job enters its directory as its account, never as jobd's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from corehelp import collect, joined

from jobservice.core import JobCoordinator
from jobservice.core.confine import Account
from jobservice.core.errors import DirectoryNotFound, JobError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="run-as needs root")


async def test_a_directory_the_account_cannot_reach_is_not_entered_for_it(
    coord: JobCoordinator, tmp_path: Path
) -> None:
    # A readable file in a directory inside one only root may search (like DATA_DIR/db's
    # -wal file): entering it as root and then switching would hand nobody the file.
    private = tmp_path / "private"
    inner = private / "inner"
    inner.mkdir(parents=True)
    private.chmod(0o700)
    (inner / "secret").write_text("only root may reach this\n")
    (inner / "secret").chmod(0o644)
    # The account's own chdir fails, so the start is refused as for a missing directory.
    with pytest.raises(DirectoryNotFound, match="Permission denied"):
        await coord.start("a", "cat", ["secret"], dir=str(inner), run_as=Account.lookup("nobody"))
    # And where the account may go, it runs there as itself.
    job = await coord.start("a", "id", ["-u"], dir="/tmp", run_as=Account.lookup("nobody"))
    assert joined(await collect(coord, job)) == f"{Account.lookup('nobody').uid}\n".encode()


async def _refusal(coord: JobCoordinator, command: str, **kwargs: object) -> str:
    nobody = Account.lookup("nobody")
    with pytest.raises(JobError) as refused:
        await coord.start("a", command, run_as=nobody, **kwargs)  # type: ignore[arg-type]
    return f"{type(refused.value).__name__}: {refused.value}"


async def test_what_only_root_may_see_is_not_told_apart_for_another_account(
    coord: JobCoordinator, tmp_path: Path
) -> None:
    """jobd (root) must not tell a job's account whether a file exists where it may not look:
    the directory and the command are found by the job's first process, as the account."""
    private = tmp_path / "private"
    (private / "dir").mkdir(parents=True)
    (private / "tool").write_text("#!/bin/sh\necho hi\n")
    (private / "tool").chmod(0o755)
    private.chmod(0o700)
    exists, missing = private / "tool", private / "no-such-tool"
    told_missing = await _refusal(coord, str(missing))
    assert await _refusal(coord, str(exists)) == told_missing.replace(str(missing), str(exists))
    assert "Permission denied" in await _refusal(coord, str(exists))
    a_dir = await _refusal(coord, "true", dir=str(private / "dir"))
    no_dir = await _refusal(coord, "true", dir=str(private / "no-dir"))
    assert a_dir.replace("/dir:", "/no-dir:") == no_dir
    assert a_dir == f"DirectoryNotFound: cannot enter directory {private}/dir: Permission denied"
    # PATH searched as the account: the same answer with or without the file on it.
    found = await _refusal(coord, "tool", env=[f"PATH={private}"])
    not_found = await _refusal(coord, "no-such-tool", env=[f"PATH={private}"])
    assert found == not_found.replace("no-such-tool", "tool")
    assert found == "CommandNotExecutable: cannot execute tool: Permission denied"


async def test_a_command_is_searched_on_path_as_the_account(coord: JobCoordinator) -> None:
    with tempfile.TemporaryDirectory() as where:  # where nobody may look (not under /root)
        Path(where).chmod(0o755)
        await _search_as_nobody(coord, Path(where) / "bin")


async def test_a_bad_interpreter_is_the_one_the_account_found(coord: JobCoordinator) -> None:
    """jobd names the #! of the file the account's search hit, not of a file earlier on PATH
    that only root can reach (that would tell the user it exists, and its first line)."""
    with tempfile.TemporaryDirectory() as where:
        Path(where).chmod(0o755)
        hidden, bin_dir = Path(where) / "hidden", Path(where) / "bin"
        for d, interpreter in ((hidden, "/root/only/sh"), (bin_dir, "/no/such/sh")):
            d.mkdir()
            (d / "broken").write_text(f"#!{interpreter}\n")
            (d / "broken").chmod(0o755)
        hidden.chmod(0o700)  # root's: nobody may not look in
        assert await _refusal(coord, "broken", env=[f"PATH={hidden}:{bin_dir}"]) == (
            "CommandNotExecutable: cannot execute broken: bad interpreter /no/such/sh: "
            "No such file or directory"
        )


async def test_a_script_the_account_may_run_but_not_read_keeps_its_interpreter(
    coord: JobCoordinator,
) -> None:
    """A script of mode 0711 whose #! names a missing program: the kernel tells the account
    ENOENT, and jobd does not name the program (root could read the name; the account could
    not). One the account may read is named, escaped where it does not print."""
    with tempfile.TemporaryDirectory() as where:
        Path(where).chmod(0o755)
        script = Path(where) / "private-tool"
        script.write_text("#!/opt/secret/interpreter\n")
        script.chmod(0o711)
        for command, env in ((str(script), []), ("private-tool", [f"PATH={where}"])):
            assert await _refusal(coord, command, env=env) == (
                f"CommandNotExecutable: cannot execute {command}: No such file or directory"
            )
        script.write_bytes(b"#!/bin/sh\r\necho saved with CRLF\r\n")
        script.chmod(0o755)
        assert await _refusal(coord, str(script)) == (
            f"CommandNotExecutable: cannot execute {script}: bad interpreter /bin/sh\\r: "
            "No such file or directory"
        )


async def _search_as_nobody(coord: JobCoordinator, bin_dir: Path) -> None:
    bin_dir.mkdir()
    (bin_dir / "hello").write_text("#!/bin/sh\necho hello from $0\n")
    (bin_dir / "hello").chmod(0o755)
    (bin_dir / "broken").write_text("#!/no/such/sh\n")
    (bin_dir / "broken").chmod(0o755)
    path = f"/nonexistent:{bin_dir}:/usr/bin:/bin"
    nobody = Account.lookup("nobody")
    job = await coord.start("a", "hello", env=[f"PATH={path}"], run_as=nobody)
    assert joined(await collect(coord, job)) == f"hello from {bin_dir}/hello\n".encode()
    assert await _refusal(coord, "no-such-command", env=[f"PATH={path}"]) == (
        f"CommandNotFound: command not found: no-such-command (searched PATH={path})"
    )
    assert await _refusal(coord, "broken", env=[f"PATH={path}"]) == (
        "CommandNotExecutable: cannot execute broken: bad interpreter /no/such/sh: "
        "No such file or directory"
    )
