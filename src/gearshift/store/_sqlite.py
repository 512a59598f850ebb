"""The embedded default store: stdlib ``sqlite3`` on one private thread.

Every call runs on a single dedicated thread (sqlite3 connections belong to the thread
that made them), so the event loop never blocks on a disk write. WAL journalling with
``synchronous=FULL`` makes each committed batch survive a crash or power loss; group
commit turns that one fsync into thousands of jobs' worth of durability.

Tables: ``<table>`` (queued jobs, ``seq`` is insertion order), ``<table>_meta`` (the
boot counter), ``<table>_outcomes``, ``<table>_schedules`` and ``<table>_flows`` (admin
flow settings, one text per function), and the index ``<table>_page`` (function,
priority: a deep queue's pages, see ``load_page``). Times are REAL (an 8-byte
float: exact). A job table made by an older version gains its ``submitted`` column and
the index on first open (existing rows read 0, "unknown").
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import urlsplit

from gearshift.store._base import (
    Batch,
    JobRow,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
)
from gearshift.store._open import query_option, table_name
from gearshift.store._record import pack_reasons, unpack_reasons

T = TypeVar("T")

#: How long a writer waits for a lock held by another process before failing.
BUSY_TIMEOUT_S = 10.0

_SYNC_MODES = ("full", "normal", "extra")


class SQLiteStore(Store):
    """``sqlite:///path/queue.db[?table=NAME&synchronous=full|normal]``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.path = (parts.netloc + parts.path) or ""
        if not self.path:
            raise ValueError(f"store {url!r}: sqlite URL needs a file path (sqlite:///path)")
        self.table = table_name(url, "gearshift_jobs")
        self.synchronous = query_option(url, "synchronous", "full").lower()
        if self.synchronous not in _SYNC_MODES:
            raise ValueError(f"store {url!r}: synchronous must be one of {_SYNC_MODES}")
        self.description = f"SQLite {self.path}"
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._claim_fd: int | None = None  # the held lock file (see claim)

    # ---------------------------------------------------------------- plumbing

    async def _call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="gearshift-sqlite")
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                return await loop.run_in_executor(self._executor, self._run, fn)
            except (sqlite3.Error, OSError) as exc:
                await loop.run_in_executor(self._executor, self._drop)
                raise StoreError(f"{self.description}: {what} failed: {exc}") from exc

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """On the store thread: (re)connect if needed, then run ``fn``."""
        if self._db is None:
            self._db = self._connect()
        return fn(self._db)

    def _drop(self) -> None:
        """On the store thread: forget a connection after an error; the next call reconnects."""
        if self._db is not None:
            try:
                self._db.rollback()
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            raise sqlite3.OperationalError(f"directory {directory!r} does not exist")
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                             check_same_thread=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            _create_schema(db, self.table)
        except sqlite3.Error:
            db.close()
            raise
        return db

    # ---------------------------------------------------------------- contract

    async def open(self) -> None:
        await self._call("open", lambda db: None)

    async def boot(self) -> int:
        def bump(db: sqlite3.Connection) -> int:
            with _transaction(db):
                db.execute(f"INSERT INTO {self.table}_meta VALUES ('boot', 1) "
                           "ON CONFLICT(name) DO UPDATE SET value = value + 1")
                row = db.execute(f"SELECT value FROM {self.table}_meta WHERE name = 'boot'")
                value: int = row.fetchone()[0]
            return value

        return await self._call("boot counter update", bump)

    async def load(self) -> list[StoredJob]:
        def read(db: sqlite3.Connection) -> list[StoredJob]:
            rows = db.execute(f"SELECT {_JOB_COLUMNS} FROM {self.table} ORDER BY seq")
            return [StoredJob(h, f, u, d, p, w, r, n, float(s))
                    for h, f, u, d, p, w, r, n, s in rows]

        return await self._call("load", read)

    # ------------------------------------------------- deep queues (paging)

    pageable = True

    async def load_chunk(self, after: int, limit: int) -> list[JobRow]:
        def read(db: sqlite3.Connection) -> list[JobRow]:
            # The rows as they come: ``submitted`` is REAL (a float) by the column's type.
            rows: list[JobRow] = db.execute(
                f"SELECT seq, {_JOB_COLUMNS} FROM {self.table} WHERE seq > ? "
                "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
            return rows

        return await self._call("load", read)

    async def load_page(self, function: bytes, priority: int, after: int, limit: int,
                        start: bytes = b"") -> list[JobRow]:
        def read(db: sqlite3.Connection) -> list[JobRow]:
            low = after
            if start:
                # The job a caller knows by handle only: begin there (if still stored).
                row = db.execute(f"SELECT seq FROM {self.table} WHERE handle = ?",
                                 (start,)).fetchone()
                if row is not None and row[0] - 1 > low:
                    low = row[0] - 1
            rows: list[JobRow] = db.execute(
                f"SELECT seq, {_JOB_COLUMNS} FROM {self.table} WHERE function = ? "
                "AND priority = ? AND seq > ? ORDER BY seq LIMIT ?",
                (function, priority, low, limit)).fetchall()
            return rows

        return await self._call("load", read)

    async def load_jobs(self, handles: list[bytes]) -> list[StoredJob]:
        def read(db: sqlite3.Connection) -> list[StoredJob]:
            found: list[StoredJob] = []
            for i in range(0, len(handles), 500):  # bound the bound parameters per query
                part = handles[i:i + 500]
                rows = db.execute(f"SELECT {_JOB_COLUMNS} FROM {self.table} WHERE handle "
                                  f"IN ({', '.join('?' * len(part))})", part)
                found += [StoredJob(h, f, u, d, p, w, r, n, float(s))
                          for h, f, u, d, p, w, r, n, s in rows]
            return found

        return await self._call("load", read)

    async def load_outcomes(self) -> list[StoredOutcome]:
        def read(db: sqlite3.Connection) -> list[StoredOutcome]:
            rows = db.execute(f"SELECT {_OUTCOME_COLUMNS} FROM {self.table}_outcomes "
                              "ORDER BY ended, seq")
            return [StoredOutcome(h, f, u, state, result, attempts, float(submitted),
                                  float(started), float(ended), bool(dead), data, p, r,
                                  unpack_reasons(reasons))
                    for (h, f, u, state, result, attempts, submitted, started, ended, dead,
                         data, p, r, reasons) in rows]

        return await self._call("load", read)

    async def load_schedules(self) -> list[StoredSchedule]:
        def read(db: sqlite3.Connection) -> list[StoredSchedule]:
            rows = db.execute(f"SELECT {_SCHEDULE_COLUMNS} FROM {self.table}_schedules "
                              "ORDER BY seq")
            return [StoredSchedule(k, f, u, cron, d, p, float(last))
                    for k, f, u, cron, d, p, last in rows]

        return await self._call("load", read)

    async def load_flows(self) -> dict[bytes, str]:
        def read(db: sqlite3.Connection) -> dict[bytes, str]:
            rows = db.execute(f"SELECT function, setting FROM {self.table}_flows ORDER BY seq")
            return {bytes(name): str(setting) for name, setting in rows}

        return await self._call("load", read)

    async def apply(self, batch: Batch) -> None:
        batch = batch.normalized()
        if not batch:
            return
        t = self.table

        def write(db: sqlite3.Connection) -> None:
            with _transaction(db):
                if batch.adds:
                    _insert_jobs(db, t, batch.adds)
                if batch.removes:
                    _delete_many(db, t, "handle", batch.removes)
                db.executemany(f"UPDATE {t} SET retries = ? WHERE handle = ?",
                               [(n, h) for h, n in batch.retries.items()])
                db.executemany(f"UPDATE {t} SET when_to_run = ? WHERE handle = ?",
                               [(w, h) for h, w in batch.when.items()])
                if batch.outcomes:
                    _write_outcomes(db, t, batch)
                if batch.schedules:
                    _write_schedules(db, t, batch)
                if batch.flows:
                    _write_flows(db, t, batch)

        await self._call("write", write)

    async def claim(self, server_id: str, lease: float) -> bool:
        """Refuse a second server on this file and table: SQLite is one server's store.

        An exclusive ``flock`` on ``<path>.<table>.lock``, held until :meth:`close`
        (the kernel drops it when the process dies, so a crash leaves no stale lock).
        The file says who holds it, for the error message.
        """
        path = f"{self.path}.{self.table}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.description}: cannot open lock file {path}: {exc}"
                             ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"{self.description} (table {self.table}) is in use by another gearshift "
                f"server ({holder}); SQLite serves one server at a time: give each server "
                "its own file, or share PostgreSQL between servers") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"server {server_id}, pid {os.getpid()}\n".encode(), 0)
        self._claim_fd = fd
        return False

    async def close(self) -> None:
        if self._claim_fd is not None:
            fd, self._claim_fd = self._claim_fd, None
            os.close(fd)  # releases the flock
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._drop)
        executor.shutdown(wait=True)


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (all or nothing)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


_JOB_COLUMNS = ("handle, function, unique_key, data, priority, when_to_run, reducer, retries, "
                "submitted")
_OUTCOME_COLUMNS = ("handle, function, unique_key, state, result, attempts, submitted, "
                    "started, ended, dead, data, priority, reducer, reasons")
_SCHEDULE_COLUMNS = "skey, function, unique_key, cron, data, priority, last_fired"


def _create_schema(db: sqlite3.Connection, t: str) -> None:
    """Create missing tables, and add ``submitted`` to a job table made before it existed.

    Checked read-only first: the usual open finds everything in place and must not wait
    for another process's write lock. Otherwise one IMMEDIATE transaction, so two servers
    opening one file cannot both add the column.
    """
    tables = {name.lower() for (name,) in
              db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    wanted = {f"{t}{suffix}".lower()
              for suffix in ("", "_meta", "_outcomes", "_schedules", "_flows", "_page")}
    if wanted <= tables and any(row[1] == "submitted"
                                for row in db.execute(f"PRAGMA table_info({t})")):
        return
    with _transaction(db):
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (seq INTEGER PRIMARY KEY, "
            "handle BLOB NOT NULL UNIQUE, function BLOB NOT NULL, unique_key BLOB NOT NULL, "
            "data BLOB NOT NULL, priority INTEGER NOT NULL, when_to_run INTEGER NOT NULL, "
            "reducer BLOB NOT NULL, retries INTEGER NOT NULL, "
            "submitted REAL NOT NULL DEFAULT 0.0)"
        )
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({t})")}
        if "submitted" not in columns:
            db.execute(f"ALTER TABLE {t} ADD COLUMN submitted REAL NOT NULL DEFAULT 0.0")
        # A deep queue's pages (load_page) are read by function and priority in seq
        # order: the index holds the rowid, so a page is one range scan.
        db.execute(f"CREATE INDEX IF NOT EXISTS {t}_page ON {t} (function, priority)")
        db.execute(f"CREATE TABLE IF NOT EXISTS {t}_meta "
                   "(name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {t}_outcomes (seq INTEGER PRIMARY KEY, "
            "handle BLOB NOT NULL UNIQUE, function BLOB NOT NULL, unique_key BLOB NOT NULL, "
            "state TEXT NOT NULL, result BLOB NOT NULL, attempts INTEGER NOT NULL, "
            "submitted REAL NOT NULL, started REAL NOT NULL, ended REAL NOT NULL, "
            "dead INTEGER NOT NULL, data BLOB NOT NULL, priority INTEGER NOT NULL, "
            "reducer BLOB NOT NULL, reasons BLOB NOT NULL)"
        )
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {t}_schedules (seq INTEGER PRIMARY KEY, "
            "skey BLOB NOT NULL UNIQUE, function BLOB NOT NULL, unique_key BLOB NOT NULL, "
            "cron TEXT NOT NULL, data BLOB NOT NULL, priority INTEGER NOT NULL, "
            "last_fired REAL NOT NULL)"
        )
        db.execute(f"CREATE TABLE IF NOT EXISTS {t}_flows (seq INTEGER PRIMARY KEY, "
                   "function BLOB NOT NULL UNIQUE, setting TEXT NOT NULL)")


#: Most jobs per INSERT statement. sqlite3 releases the GIL around every step of a
#: statement, and taking it back while the event loop runs cost a thread switch per
#: row with one ``executemany`` row per job; one multi-row statement is one step. With
#: the event loop's per-job futures gone too (GroupCommitter.add_quiet), a 300k-job
#: queue fill took ~25% less server CPU (docs/benchmarks.md, "Round 6").
ROWS_PER_INSERT = 1024


def _insert_jobs(db: sqlite3.Connection, t: str, adds: list[StoredJob]) -> None:
    _insert_many(db, f"INSERT INTO {t} (handle, function, unique_key, data, priority, "
                 "when_to_run, reducer, retries, submitted) VALUES ",
                 [(j.handle, j.function, j.unique, j.data, j.priority, j.when, j.reducer,
                   j.retries, j.submitted) for j in adds], 9)


def _insert_many(db: sqlite3.Connection, head: str, rows: list[tuple[object, ...]],
                 width: int) -> None:
    """``head`` (an INSERT ... VALUES) for ``rows`` of ``width`` values, up to
    ROWS_PER_INSERT rows per statement."""
    # SQLite before 3.32 binds at most 999 values per statement.
    per = max(1, min(ROWS_PER_INSERT,
                     db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    one = "(" + ", ".join("?" * width) + ")"
    for i in range(0, len(rows), per):
        part = rows[i:i + per]
        db.execute(head + ", ".join([one] * len(part)),
                   tuple(itertools.chain.from_iterable(part)))


def _delete_many(db: sqlite3.Connection, table: str, column: str, keys: list[bytes]) -> None:
    """Many keys per DELETE, as for inserts (one step, one GIL round trip, each)."""
    per = min(ROWS_PER_INSERT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    for i in range(0, len(keys), per):
        part = keys[i:i + per]
        db.execute(f"DELETE FROM {table} WHERE {column} IN ({', '.join('?' * len(part))})",
                   part)


def _write_outcomes(db: sqlite3.Connection, t: str, batch: Batch) -> None:
    # INSERT OR REPLACE deletes the old row and adds a new one with a new seq, so a
    # replaced outcome moves to the end of the insertion order (as in the memory store).
    # Many rows per statement, as for jobs: a drain writes one outcome per job.
    _insert_many(db, f"INSERT OR REPLACE INTO {t}_outcomes ({_OUTCOME_COLUMNS}) VALUES ",
                 [(o.handle, o.function, o.unique, o.state, o.result, o.attempts,
                   o.submitted, o.started, o.ended, int(o.dead), o.data, o.priority,
                   o.reducer, pack_reasons(o.reasons))
                  for o in batch.outcomes.values() if o is not None], 14)
    _delete_many(db, f"{t}_outcomes", "handle",
                 [h for h, o in batch.outcomes.items() if o is None])


def _write_schedules(db: sqlite3.Connection, t: str, batch: Batch) -> None:
    # An upsert keeps the row (and its seq): schedules load in first-stored order.
    db.executemany(
        f"INSERT INTO {t}_schedules ({_SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(skey) DO UPDATE SET function = excluded.function, "
        "unique_key = excluded.unique_key, cron = excluded.cron, data = excluded.data, "
        "priority = excluded.priority, last_fired = excluded.last_fired",
        [(s.key, s.function, s.unique, s.cron, s.data, s.priority, s.last_fired)
         for s in batch.schedules.values() if s is not None])
    db.executemany(f"DELETE FROM {t}_schedules WHERE skey = ?",
                   [(k,) for k, s in batch.schedules.items() if s is None])


def _write_flows(db: sqlite3.Connection, t: str, batch: Batch) -> None:
    db.executemany(
        f"INSERT INTO {t}_flows (function, setting) VALUES (?, ?) "
        "ON CONFLICT(function) DO UPDATE SET setting = excluded.setting",
        [(name, setting) for name, setting in batch.flows.items() if setting is not None])
    db.executemany(f"DELETE FROM {t}_flows WHERE function = ?",
                   [(name,) for name, setting in batch.flows.items() if setting is None])
