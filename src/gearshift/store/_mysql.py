"""MySQL / MariaDB store on aiomysql (extra ``gearshift[mysql]``).

One connection, one InnoDB transaction per batch (adds go in as multi-row INSERTs).
The AUTO_INCREMENT ``seq`` column records insertion order. Payloads
up to the server's ``max_allowed_packet`` (16 MiB by default on MariaDB 10.2+) fit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from gearshift.store._base import Batch, Store, StoredJob, StoreError
from gearshift.store._open import table_name

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
        t = self.table
        try:
            async with conn.cursor() as cur:
                # "IF NOT EXISTS" on an existing table is a server warning, not news.
                await cur.execute("SET SESSION sql_notes = 0")
                await cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {t} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
                    "handle VARBINARY(255) NOT NULL UNIQUE, function BLOB NOT NULL, "
                    "unique_key BLOB NOT NULL, data LONGBLOB NOT NULL, priority TINYINT NOT NULL, "
                    "when_to_run BIGINT NOT NULL, reducer BLOB NOT NULL, retries INT NOT NULL) "
                    "ENGINE=InnoDB")
                await cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {t}_meta (name VARCHAR(32) PRIMARY KEY, "
                    "value BIGINT NOT NULL) ENGINE=InnoDB")
                await cur.execute("SET SESSION sql_notes = 1")
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
                f"retries FROM {self.table} ORDER BY seq")
            return [StoredJob(bytes(r[0]), bytes(r[1]), bytes(r[2]), bytes(r[3]), int(r[4]),
                              int(r[5]), bytes(r[6]), int(r[7])) for r in await cur.fetchall()]

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


def _statements(table: str, batch: Batch) -> list[str]:
    """The SQL for one batch: multi-row INSERTs of bounded size, one DELETE, UPDATEs."""
    out: list[str] = []
    head = (f"INSERT INTO {table} (handle, function, unique_key, data, priority, when_to_run, "
            "reducer, retries) VALUES ")
    rows: list[str] = []
    size = 0
    for j in batch.adds:
        row = (f"({_hex(j.handle)}, {_hex(j.function)}, {_hex(j.unique)}, {_hex(j.data)}, "
               f"{int(j.priority)}, {int(j.when)}, {_hex(j.reducer)}, {int(j.retries)})")
        if rows and size + len(row) > MAX_STATEMENT:
            out.append(head + ", ".join(rows))
            rows, size = [], 0
        rows.append(row)
        size += len(row) + 2
    if rows:
        out.append(head + ", ".join(rows))
    if batch.removes:
        handles = ", ".join(_hex(h) for h in batch.removes)
        out.append(f"DELETE FROM {table} WHERE handle IN ({handles})")
    out += [f"UPDATE {table} SET retries = {int(n)} WHERE handle = {_hex(h)}"
            for h, n in batch.retries.items()]
    return out
