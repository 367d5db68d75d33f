"""jobd refuses a data directory it cannot trust, says why, and changes nothing in it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from jobdhelp import JobdLauncher

from jobservice.store.sqlite import DB_NAME


def _refused(launcher: JobdLauncher, data: Path) -> str:
    """jobd's stderr, after checking it exited non-zero before listening."""
    result = subprocess.run(
        launcher.command(data_dir=data), capture_output=True, timeout=30, check=False
    )
    err = result.stderr.decode()
    assert result.returncode != 0, err
    assert "listening" not in err
    return err


def _snapshot(data: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        str(p.relative_to(data)): (p.read_bytes(), p.stat().st_mode, p.stat().st_uid)
        for p in sorted(data.rglob("*"))
        if p.is_file()
    }


def _corrupt(db: Path) -> None:
    db.write_bytes(b"this is no database " * 200)


def _foreign(db: Path) -> None:
    db.unlink()
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE recipes (name TEXT)")
    other.close()


def _newer(db: Path) -> None:
    with sqlite3.connect(db) as ours:
        ours.execute("PRAGMA user_version = 99")
    ours.close()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_corrupt, "is not a usable jobservice database"),
        (_foreign, "is not a jobservice database"),
        (_newer, "has schema version 99, newer than this jobd knows (1)"),
    ],
)
def test_a_database_it_cannot_use_is_refused_and_left_alone(
    jobd_launcher: JobdLauncher, damage: Callable[[Path], None], message: str
) -> None:
    jobd = jobd_launcher.start()
    assert jobd.terminate() == 0
    db = jobd.data_dir / DB_NAME
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    damage(db)
    before = _snapshot(jobd.data_dir)
    err = _refused(jobd_launcher, jobd.data_dir)
    assert f"refusing to start: {db} {message}" in err
    assert _snapshot(jobd.data_dir) == before


@pytest.mark.parametrize("what", ["data", "db"])
def test_a_directory_others_may_write_is_refused(
    jobd_launcher: JobdLauncher, tmp_path: Path, what: str
) -> None:
    data = tmp_path / "shared"
    (data / "db").mkdir(parents=True, mode=0o700)
    os.chmod(data if what == "data" else data / "db", 0o777)
    err = _refused(jobd_launcher, data)
    assert "is writable by other users (mode 777); chmod go-w it" in err


def test_a_data_directory_of_another_user_is_refused(
    jobd_launcher: JobdLauncher, tmp_path: Path
) -> None:
    data = tmp_path / "theirs"
    data.mkdir(mode=0o700)
    os.chown(data, 4242, 4242)
    err = _refused(jobd_launcher, data)
    assert f"data directory {data} belongs to uid 4242, not to jobd's user" in err
    assert list(data.iterdir()) == []
