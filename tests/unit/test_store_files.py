"""The store's files are jobd's alone from the first open: the database, its -wal and -shm."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from jobservice.store import SqliteStore


def test_a_new_database_and_its_wal_and_shm_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    old = os.umask(0o022)
    try:
        store = SqliteStore(data)
    finally:
        os.umask(old)
    try:
        files = sorted((data / "db").iterdir())
        assert [f.name for f in files] == ["jobs.db", "jobs.db-shm", "jobs.db-wal"]
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    finally:
        store.close()
