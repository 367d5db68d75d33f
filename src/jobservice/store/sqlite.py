"""The job records of `jobd` in SQLite (WAL), under the data directory: `DATA_DIR/db/jobs.db`.

One row per job (`jobs`) and the id high-water mark (`meta`). Opening checks before it trusts
anything: the data directory and the database must belong to this user and be writable by
nobody else; the file must be an SQLite database made by jobservice (application_id), of a
schema version this code knows (user_version), and pass SQLite's quick_check. Any doubt is a
`StoreError` and nothing is changed: no reset, no deletion. Older schemas are migrated forward
by `_MIGRATIONS`, one version at a time, in one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobservice.core.model import ExitStatus, JobInfo, JobLimits, JobState, Usage
from jobservice.core.store import Change, Ended, JobRecord, Leader, Removal, StoredJobs

__all__ = ["APPLICATION_ID", "DB_NAME", "SCHEMA_VERSION", "SqliteStore", "StoreError"]

# In a directory of its own, mode 0700: SQLite creates the -wal and -shm files beside the
# database with the process umask, and they hold the same records.
DB_NAME = "db/jobs.db"
APPLICATION_ID = 0x4A4F4244  # "JOBD": marks the file as ours
SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    # 0 -> 1: the first schema. Columns for confinement (run_as, limits, usage, cause) are
    # nullable: jobs started without it have none.
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('next_id', 0);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        command TEXT NOT NULL,
        args TEXT NOT NULL,               -- JSON array of strings
        dir TEXT NOT NULL,
        env_names TEXT NOT NULL,          -- JSON array (values are never stored)
        run_as TEXT,
        limits TEXT,                      -- JSON object
        unconfined INTEGER,
        state TEXT NOT NULL,              -- running | exited | lost
        started_at REAL NOT NULL,
        ended_at REAL,
        exit_code INTEGER,
        signal INTEGER,
        cpu_seconds REAL,
        peak_memory_bytes INTEGER,
        cause TEXT,
        lost_reason TEXT,
        output_path TEXT NOT NULL,        -- relative to the data directory
        output_bytes INTEGER NOT NULL,
        output_truncated INTEGER NOT NULL,
        log_size INTEGER NOT NULL,
        leader_pid INTEGER,
        leader_start_ticks INTEGER,
        leader_boot_id TEXT,
        leader_pipes TEXT                 -- JSON array of inode numbers
    );
    """,
}

_COLUMNS = (
    "id, owner, command, args, dir, env_names, state, started_at, ended_at, exit_code, signal, "
    "lost_reason, output_path, output_bytes, output_truncated, log_size, "
    "leader_pid, leader_start_ticks, leader_boot_id, leader_pipes, "
    "run_as, limits, unconfined, cpu_seconds, peak_memory_bytes, cause"
)
# Statements built from the constant column list above; every value is a bound parameter.
_PLACES = ", ".join("?" * (_COLUMNS.count(",") + 1))
_INSERT = f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES ({_PLACES})"  # noqa: S608
_END = (
    "UPDATE jobs SET state = ?, ended_at = ?, exit_code = ?, signal = ?, lost_reason = ?, "
    "output_bytes = ?, output_truncated = ?, log_size = ?, cpu_seconds = ?, "
    "peak_memory_bytes = ?, cause = ?, leader_pid = NULL, "
    "leader_start_ticks = NULL, leader_boot_id = NULL, leader_pipes = NULL WHERE id = ?"
)
_SELECT = f"SELECT {_COLUMNS} FROM jobs ORDER BY id"  # noqa: S608
_BUMP_ID = "UPDATE meta SET value = max(value, ?) WHERE key = 'next_id'"


class StoreError(Exception):
    """The data directory or its database cannot be trusted or used; the message says why."""


class SqliteStore:
    """`core.store.JobStore` in one SQLite file; use it from one thread at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_NAME
        _check_owned(data_dir, "data directory")
        try:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        _check_owned(self.path.parent, "database directory")
        if self.path.exists():
            _check_owned(self.path, "database")
        else:
            _create_private(self.path)
        try:
            # Thread-safety is the Journal's: one writer at a time, possibly not the opener.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        try:
            self._open()
            os.chmod(self.path, 0o600)  # ours now: the records are nobody else's business
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path} is not a usable jobservice database: {exc}") from None
        except StoreError:
            self._db.close()
            raise

    def _open(self) -> None:
        db = self._db
        found = db.execute("PRAGMA quick_check").fetchone()[0]
        if found != "ok":
            raise StoreError(f"{self.path} is damaged (quick_check: {found})")
        app, version = _pragma(db, "application_id"), _pragma(db, "user_version")
        tables = db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if app != APPLICATION_ID and (app != 0 or version != 0 or tables):
            raise StoreError(f"{self.path} is not a jobservice database (another program's?)")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this jobd knows "
                f"({SCHEMA_VERSION}): run the newer jobd, or a copy of the data directory"
            )
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk (fsync of the WAL) before a job's id or end is shown.
        db.execute("PRAGMA synchronous = FULL")
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # Statements split at ";": the migration scripts keep it out of comments and strings.
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def load(self) -> StoredJobs:
        rows = self._db.execute(_SELECT).fetchall()
        next_id = self._db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()[0]
        return StoredJobs([_record(row) for row in rows], next_id)

    def write(self, changes: Sequence[Change]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            for change in changes:
                if isinstance(change, JobRecord):
                    db.execute(_INSERT, _row(change))
                    db.execute(_BUMP_ID, (change.info.id + 1,))
                elif isinstance(change, Ended):
                    db.execute(_END, _end_row(change))
                else:
                    db.executemany("DELETE FROM jobs WHERE id = ?", _ids(change))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()


def _create_private(path: Path) -> None:
    """An empty database file of mode 0600, before SQLite opens it.

    SQLite gives the -wal and -shm files it creates the database file's mode; left to SQLite,
    a new database and both of them would start with the umask's (0644 under the usual 022).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        os.close(os.open(path, flags, 0o600))
    except FileExistsError:
        pass  # made meanwhile: checked like any other by its first use below
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None


def _check_owned(path: Path, what: str) -> None:
    """Refuse a path another user owns or may write: it could feed us forged records."""
    try:
        st = path.lstat()
    except OSError as exc:
        raise StoreError(f"cannot use {what} {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"{what} {path} is a symbolic link; give the real path")
    if st.st_uid != os.geteuid():
        raise StoreError(
            f"{what} {path} belongs to uid {st.st_uid}, not to jobd's user (uid {os.geteuid()})"
        )
    if st.st_mode & 0o022:
        raise StoreError(
            f"{what} {path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"chmod go-w it"
        )


def _pragma(db: sqlite3.Connection, name: str) -> int:
    value: int = db.execute(f"PRAGMA {name}").fetchone()[0]
    return value


def _ids(removal: Removal) -> list[tuple[int]]:
    return [(job_id,) for job_id in removal.job_ids]


def _exit_columns(info: JobInfo) -> tuple[int | None, int | None]:
    if info.exit is None:
        return None, None
    return info.exit.code, info.exit.signal


# The `cause` column: why the kernel or jobd ended the job, comma-separated.
_OOM, _TIMED_OUT = "oom-killed", "timed-out"


def _confinement_columns(info: JobInfo) -> tuple[Any, ...]:
    """run_as, limits, unconfined (what a job was started with)."""
    limits = {k: v for k, v in dataclasses.asdict(info.limits).items() if v is not None}
    return info.run_as or None, json.dumps(limits), int(not info.confined)


def _usage_columns(info: JobInfo) -> tuple[Any, ...]:
    """cpu_seconds, peak_memory_bytes, cause (what it used and why it was killed)."""
    causes = [c for c, why in ((_OOM, info.oom_killed), (_TIMED_OUT, info.timed_out)) if why]
    usage = info.usage
    return (
        usage.cpu_seconds if usage else None,
        usage.peak_memory if usage else None,
        ",".join(causes) or None,
    )


def _row(record: JobRecord) -> tuple[Any, ...]:
    info, leader = record.info, record.leader
    return (
        info.id,
        info.owner,
        info.command,
        json.dumps(info.args),
        info.dir,
        json.dumps(record.env_names),
        info.state.value,
        info.started_at,
        info.ended_at,
        *_exit_columns(info),
        info.lost_reason,
        record.output_path,
        info.output_bytes,
        info.output_truncated,
        record.log_size,
        leader.pid if leader else None,
        leader.start_ticks if leader else None,
        leader.boot_id if leader else None,
        json.dumps(leader.pipes) if leader else None,
        *_confinement_columns(info),
        *_usage_columns(info),
    )


def _end_row(ended: Ended) -> tuple[Any, ...]:
    info = ended.info
    return (
        info.state.value,
        info.ended_at,
        *_exit_columns(info),
        info.lost_reason,
        info.output_bytes,
        info.output_truncated,
        ended.log_size,
        *_usage_columns(info),
        info.id,
    )


def _record(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
    (
        job_id,
        owner,
        command,
        args,
        dir,
        env_names,
        state,
        started_at,
        ended_at,
        exit_code,
        signal,
        lost_reason,
        output_path,
        output_bytes,
        output_truncated,
        log_size,
        pid,
        ticks,
        boot,
        pipes,
        run_as,
        limits,
        unconfined,
        cpu_seconds,
        peak_memory,
        cause,
    ) = row
    causes = (cause or "").split(",")
    exit_status = None
    if exit_code is not None or signal is not None:
        exit_status = ExitStatus(code=exit_code, signal=signal)
    info = JobInfo(
        id=job_id,
        owner=owner,
        command=command,
        args=tuple(json.loads(args)),
        dir=dir,
        state=JobState(state),
        started_at=started_at,
        ended_at=ended_at,
        exit=exit_status,
        output_bytes=output_bytes,
        output_truncated=bool(output_truncated),
        lost_reason=lost_reason,
        limits=JobLimits(**json.loads(limits)) if limits else JobLimits(),
        confined=unconfined == 0,
        run_as=run_as or "",
        usage=Usage(cpu_seconds, peak_memory) if cpu_seconds is not None else None,
        oom_killed=_OOM in causes,
        timed_out=_TIMED_OUT in causes,
    )
    leader = Leader(pid, ticks, boot, tuple(json.loads(pipes))) if pid is not None else None
    return JobRecord(info, output_path, tuple(json.loads(env_names)), log_size, leader)
