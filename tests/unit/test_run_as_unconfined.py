"""Run-as without cgroups: the job enters its directory as its account, never as jobd's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from corehelp import collect, joined

from jobservice.core import JobCoordinator
from jobservice.core.confine import Account
from jobservice.core.errors import DirectoryNotFound

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
