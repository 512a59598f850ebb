"""MySQL / MariaDB store on aiomysql (extra ``gearshift[mysql]``).

One connection, one InnoDB transaction per batch (adds go in as multi-row INSERTs,
retry counts and run-at times as one ``UPDATE ... CASE``, outcomes as multi-row
``REPLACE``, schedules as multi-row ``INSERT ... ON DUPLICATE KEY UPDATE``). The
AUTO_INCREMENT ``seq`` columns record insertion order. Payloads up to the server's
``max_allowed_packet`` (16 MiB by default on MariaDB 10.2+) fit.

Tables: ``<table>``, ``<table>_meta``, ``<table>_outcomes``, ``<table>_schedules``,
``<table>_flows`` (admin flow settings); times are DOUBLE, sent as ``repr()`` literals
(shortest exact form) and read back exactly. A job table made by an older version gains
its ``submitted`` column on first connect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from gearshift.store._base import (
    Batch,
    JobRow,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
    row_job,
)
from gearshift.store._open import table_name
from gearshift.store._record import pack_reasons, unpack_reasons

T = TypeVar("T")

#: Give up connecting after this long (an unreachable host must fail startup promptly).
CONNECT_TIMEOUT_S = 5


class MySQLStore(Store):
    """``mysql://user[:password]@host:port/database[?table=NAME]`` (also ``mariadb://``)."""

    def __init__(self, url: str) -> None:
        self.table = table_name(url, "gearshift_jobs")
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 3306
        self.user = unquote(parts.username or "root")
        self.password = unquote(parts.password or "")
        self.database = parts.path.lstrip("/") or "gearshift"
        self.description = f"MySQL at {self.host}:{self.port}/{self.database}"
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def _call(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await self._connect()
                return await fn(self._conn)
            except StoreError:
                self._drop()
                raise
            except Exception as exc:
                # MySQLError, OSError, or an internal driver error on a killed session:
                # this call failed; drop the connection, the next call reconnects.
                self._drop()
                verb = "unreachable" if what == "connect" else f"{what} failed"
                raise StoreError(f"{self.description} {verb}: {exc or type(exc).__name__}"
                                 ) from exc

    async def _connect(self) -> Any:
        import aiomysql

        try:
            conn = await aiomysql.connect(
                host=self.host, port=self.port, user=self.user, password=self.password,
                db=self.database, autocommit=False, connect_timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, aiomysql.MySQLError, OSError) as exc:
            raise StoreError(f"{self.description} unreachable: {exc or type(exc).__name__}"
                             ) from exc
        try:
            async with conn.cursor() as cur:
                await _create_schema(cur, self.table)
            await conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def open(self) -> None:
        async def noop(conn: Any) -> None:
            return None

        await self._call("connect", noop)

    async def _transaction(self, conn: Any, body: Callable[[Any], Awaitable[T]]) -> T:
        try:
            async with conn.cursor() as cur:
                result = await body(cur)
            await conn.commit()
        except BaseException:
            if not conn.closed:
                # Best effort: the connection is dropped right after anyway.
                with contextlib.suppress(Exception):
                    await conn.rollback()
            raise
        return result

    async def boot(self) -> int:
        async def bump(cur: Any) -> int:
            await cur.execute(f"INSERT INTO {self.table}_meta VALUES ('boot', 1) "
                              "ON DUPLICATE KEY UPDATE value = value + 1")
            await cur.execute(f"SELECT value FROM {self.table}_meta WHERE name = 'boot'")
            row = await cur.fetchone()
            return int(row[0])

        return await self._call("boot counter update", lambda c: self._transaction(c, bump))

    async def load(self) -> list[StoredJob]:
        async def read(cur: Any) -> list[StoredJob]:
            await cur.execute(
                "SELECT handle, function, unique_key, data, priority, when_to_run, reducer, "
                f"retries, submitted FROM {self.table} ORDER BY seq")
            return [StoredJob(bytes(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), int(r[4]),
                              int(r[5]), bytes(r[6]), int(r[7]), float(r[8]))
                    for r in await cur.fetchall()]

        return await self._call("load", lambda c: self._transaction(c, read))

    # ------------------------------------------------- deep queues (paging)

    pageable = True

    async def _jobs_where(self, where: str) -> list[JobRow]:
        async def read(cur: Any) -> list[JobRow]:
            await cur.execute(f"SELECT seq, {_JOB_COLUMNS} FROM {self.table} WHERE {where}")
            return [(int(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), bytes(r[4]), int(r[5]),
                     int(r[6]), bytes(r[7]), int(r[8]), float(r[9]))
                    for r in await cur.fetchall()]

        return await self._call("load", lambda c: self._transaction(c, read))

    async def load_chunk(self, after: int, limit: int) -> list[JobRow]:
        return await self._jobs_where(f"seq > {int(after)} ORDER BY seq LIMIT {int(limit)}")

    async def load_page(self, function: bytes, priority: int, after: int, limit: int,
                        start: bytes = b"") -> list[JobRow]:
        # A start job that is no longer stored leaves the bound at ``after``.
        low = (f"GREATEST({int(after)}, COALESCE((SELECT s.seq - 1 FROM {self.table} s "
               f"WHERE s.handle = {_hex(start)}), {int(after)}))") if start else str(int(after))
        return await self._jobs_where(
            f"function = {_hex(function)} AND priority = {int(priority)} AND seq > {low} "
            f"ORDER BY seq LIMIT {int(limit)}")

    async def load_jobs(self, handles: list[bytes]) -> list[StoredJob]:
        found: list[StoredJob] = []
        for i in range(0, len(handles), UPDATE_CHUNK):
            part = handles[i:i + UPDATE_CHUNK]
            found += [row_job(row) for row in await self._jobs_where(
                f"handle IN ({', '.join(map(_hex, part))})")]
        return found

    async def load_outcomes(self) -> list[StoredOutcome]:
        async def read(cur: Any) -> list[StoredOutcome]:
            await cur.execute(f"SELECT {_OUTCOME_COLUMNS} FROM {self.table}_outcomes "
                              "ORDER BY ended, seq")
            return [StoredOutcome(bytes(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]).decode(),
                                  bytes(r[4]), int(r[5]), float(r[6]), float(r[7]),
                                  float(r[8]), bool(r[9]), bytes(r[10]), int(r[11]),
                                  bytes(r[12]), unpack_reasons(bytes(r[13])))
                    for r in await cur.fetchall()]

        return await self._call("load", lambda c: self._transaction(c, read))

    async def load_schedules(self) -> list[StoredSchedule]:
        async def read(cur: Any) -> list[StoredSchedule]:
            await cur.execute(f"SELECT {_SCHEDULE_COLUMNS} FROM {self.table}_schedules "
                              "ORDER BY seq")
            return [StoredSchedule(bytes(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]).decode(),
                                   bytes(r[4]), int(r[5]), float(r[6]))
                    for r in await cur.fetchall()]

        return await self._call("load", lambda c: self._transaction(c, read))

    async def load_flows(self) -> dict[bytes, str]:
        async def read(cur: Any) -> dict[bytes, str]:
            await cur.execute(f"SELECT function, setting FROM {self.table}_flows ORDER BY seq")
            return {bytes(r[0]): bytes(r[1]).decode() for r in await cur.fetchall()}

        return await self._call("load", lambda c: self._transaction(c, read))

    async def apply(self, batch: Batch) -> None:
        batch = batch.normalized()
        if not batch:
            return
        t = self.table

        async def write(cur: Any) -> None:
            for statement in _statements(t, batch):
                await cur.execute(statement)

        await self._call("write", lambda c: self._transaction(c, write))

    async def close(self) -> None:
        async with self._lock:
            self._drop()


#: Longest SQL text we send at once; stays well under max_allowed_packet (16 MiB default)
#: while letting one statement carry many small jobs.
MAX_STATEMENT = 4 * 1024 * 1024


def _hex(value: bytes) -> str:
    """A binary literal. Built here rather than by the driver: hex digits cannot inject
    SQL, and PyMySQL 1.2 broke aiomysql's own bytes escaping."""
    return f"X'{value.hex()}'" if value else "''"


def _float(value: float) -> str:
    """A DOUBLE literal: ``repr`` is the shortest text that reads back as the same float."""
    return repr(float(value))


#: Handles per ``UPDATE ... CASE`` statement (bounds its length).
UPDATE_CHUNK = 1000

_JOB_COLUMNS = ("handle, function, unique_key, data, priority, when_to_run, reducer, retries, "
                "submitted")
_OUTCOME_COLUMNS = ("handle, function, unique_key, state, result, attempts, submitted, "
                    "started, ended, dead, data, priority, reducer, reasons")
_SCHEDULE_COLUMNS = "skey, function, unique_key, cron, data, priority, last_fired"


async def _create_schema(cur: Any, t: str) -> None:
    """Create missing tables; add ``submitted`` to a job table made before it existed.

    Checked first, then a plain ``ADD COLUMN`` (MySQL, unlike MariaDB, has no ``ADD
    COLUMN IF NOT EXISTS``); a concurrent server adding it first (error 1060) is fine.
    """
    # "IF NOT EXISTS" on an existing table is a server warning, not news.
    await cur.execute("SET SESSION sql_notes = 0")
    await cur.execute(
        f"CREATE TABLE IF NOT EXISTS {t} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "handle VARBINARY(255) NOT NULL UNIQUE, function BLOB NOT NULL, "
        "unique_key BLOB NOT NULL, data LONGBLOB NOT NULL, priority TINYINT NOT NULL, "
        "when_to_run BIGINT NOT NULL, reducer BLOB NOT NULL, retries INT NOT NULL, "
        "submitted DOUBLE NOT NULL DEFAULT 0) ENGINE=InnoDB")
    await cur.execute(
        f"CREATE TABLE IF NOT EXISTS {t}_meta (name VARCHAR(32) PRIMARY KEY, "
        "value BIGINT NOT NULL) ENGINE=InnoDB")
    await cur.execute(
        f"CREATE TABLE IF NOT EXISTS {t}_outcomes (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "handle VARBINARY(255) NOT NULL UNIQUE, function BLOB NOT NULL, "
        "unique_key BLOB NOT NULL, state VARBINARY(16) NOT NULL, result LONGBLOB NOT NULL, "
        "attempts BIGINT NOT NULL, submitted DOUBLE NOT NULL, started DOUBLE NOT NULL, "
        "ended DOUBLE NOT NULL, dead TINYINT NOT NULL, data LONGBLOB NOT NULL, "
        "priority TINYINT NOT NULL, reducer BLOB NOT NULL, reasons LONGBLOB NOT NULL) "
        "ENGINE=InnoDB")
    await cur.execute(
        f"CREATE TABLE IF NOT EXISTS {t}_schedules (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "skey VARBINARY(255) NOT NULL UNIQUE, function BLOB NOT NULL, "
        "unique_key BLOB NOT NULL, cron BLOB NOT NULL, data LONGBLOB NOT NULL, "
        "priority TINYINT NOT NULL, last_fired DOUBLE NOT NULL) ENGINE=InnoDB")
    await cur.execute(
        f"CREATE TABLE IF NOT EXISTS {t}_flows (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
        "function VARBINARY(1024) NOT NULL UNIQUE, setting VARBINARY(1024) NOT NULL) "
        "ENGINE=InnoDB")
    await cur.execute("SET SESSION sql_notes = 1")
    await cur.execute(f"SHOW COLUMNS FROM {t} LIKE 'submitted'")
    if not await cur.fetchall():
        import aiomysql

        try:
            await cur.execute(f"ALTER TABLE {t} ADD COLUMN submitted DOUBLE NOT NULL DEFAULT 0")
        except aiomysql.MySQLError as exc:
            if exc.args[0] != 1060:  # ER_DUP_FIELDNAME
                raise
    # A deep queue's pages (load_page) are read by function and priority in seq order
    # (a BLOB is indexed by a prefix; InnoDB appends the primary key, seq).
    await cur.execute(f"SHOW INDEX FROM {t} WHERE Key_name = '{t}_page'")
    if not await cur.fetchall():
        import aiomysql

        try:
            await cur.execute(f"CREATE INDEX {t}_page ON {t} (function(64), priority)")
        except aiomysql.MySQLError as exc:
            if exc.args[0] != 1061:  # ER_DUP_KEYNAME: a concurrent server made it
                raise


def _rows(head: str, rows: list[str], tail: str = "") -> list[str]:
    """Multi-row statements ``head rows... tail``, each at most about MAX_STATEMENT long."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for row in rows:
        if chunk and size + len(row) > MAX_STATEMENT:
            out.append(head + ", ".join(chunk) + tail)
            chunk, size = [], 0
        chunk.append(row)
        size += len(row) + 2
    if chunk:
        out.append(head + ", ".join(chunk) + tail)
    return out


def _statements(table: str, batch: Batch) -> list[str]:
    """The SQL for one normalized batch: multi-row INSERTs of bounded size, one DELETE
    per table, and UPDATEs that set many rows each."""
    t = table
    out = _rows(
        f"INSERT INTO {t} (handle, function, unique_key, data, priority, when_to_run, "
        "reducer, retries, submitted) VALUES ",
        [f"({_hex(j.handle)}, {_hex(j.function)}, {_hex(j.unique)}, {_hex(j.data)}, "
         f"{int(j.priority)}, {int(j.when)}, {_hex(j.reducer)}, {int(j.retries)}, "
         f"{_float(j.submitted)})" for j in batch.adds])
    if batch.removes:
        out.append(f"DELETE FROM {t} WHERE handle IN ({', '.join(map(_hex, batch.removes))})")
    handles = list(dict.fromkeys([*batch.retries, *batch.when]))
    for start in range(0, len(handles), UPDATE_CHUNK):
        chunk = handles[start:start + UPDATE_CHUNK]
        sets = []
        for column, values in (("retries", batch.retries), ("when_to_run", batch.when)):
            cases = " ".join(f"WHEN {_hex(h)} THEN {int(values[h])}"
                             for h in chunk if h in values)
            if cases:
                sets.append(f"{column} = CASE handle {cases} ELSE {column} END")
        out.append(f"UPDATE {t} SET {', '.join(sets)} "
                   f"WHERE handle IN ({', '.join(map(_hex, chunk))})")
    # REPLACE deletes the old row and inserts a new one (a new seq): a replaced outcome
    # moves to the end of insertion order, as in the memory store.
    out += _rows(
        f"REPLACE INTO {t}_outcomes ({_OUTCOME_COLUMNS}) VALUES ",
        [f"({_hex(o.handle)}, {_hex(o.function)}, {_hex(o.unique)}, {_hex(o.state.encode())}, "
         f"{_hex(o.result)}, {int(o.attempts)}, {_float(o.submitted)}, {_float(o.started)}, "
         f"{_float(o.ended)}, {int(o.dead)}, {_hex(o.data)}, {int(o.priority)}, "
         f"{_hex(o.reducer)}, {_hex(pack_reasons(o.reasons))})"
         for o in batch.outcomes.values() if o is not None])
    gone = [h for h, o in batch.outcomes.items() if o is None]
    if gone:
        out.append(f"DELETE FROM {t}_outcomes WHERE handle IN ({', '.join(map(_hex, gone))})")
    # An updated schedule keeps its row and seq: schedules load in first-stored order.
    updates = ", ".join(f"{c} = VALUES({c})" for c in _SCHEDULE_COLUMNS.split(", ")[1:])
    out += _rows(
        f"INSERT INTO {t}_schedules ({_SCHEDULE_COLUMNS}) VALUES ",
        [f"({_hex(s.key)}, {_hex(s.function)}, {_hex(s.unique)}, {_hex(s.cron.encode())}, "
         f"{_hex(s.data)}, {int(s.priority)}, {_float(s.last_fired)})"
         for s in batch.schedules.values() if s is not None],
        f" ON DUPLICATE KEY UPDATE {updates}")
    dropped = [k for k, s in batch.schedules.items() if s is None]
    if dropped:
        out.append(f"DELETE FROM {t}_schedules WHERE skey IN ({', '.join(map(_hex, dropped))})")
    out += _rows(
        f"INSERT INTO {t}_flows (function, setting) VALUES ",
        [f"({_hex(name)}, {_hex(text.encode())})"
         for name, text in batch.flows.items() if text is not None],
        " ON DUPLICATE KEY UPDATE setting = VALUES(setting)")
    unflowed = [name for name, text in batch.flows.items() if text is None]
    if unflowed:
        out.append(f"DELETE FROM {t}_flows WHERE function IN ({', '.join(map(_hex, unflowed))})")
    return out
