"""PostgreSQL store on asyncpg (extra ``gearshift[postgres]``).

One connection; each batch is ONE statement (so one implicit transaction and one round
trip) whatever its size: adds go in as arrays through ``unnest`` (WITH ORDINALITY keeps
insertion order for the ``seq`` column), removes as ``handle = ANY(...)``, retry counts
as an ``UPDATE ... FROM unnest``, each in its own data-modifying CTE. PostgreSQL's
default ``synchronous_commit = on`` makes a commit durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gearshift.store._base import Batch, Store, StoredJob, StoreError
from gearshift.store._open import redact, table_name

T = TypeVar("T")

#: Give up connecting after this long (an unreachable host must fail startup promptly).
CONNECT_TIMEOUT_S = 5.0
#: Any single statement taking longer than this counts as a failed write.
COMMAND_TIMEOUT_S = 30.0

_OUR_OPTIONS = ("table",)


class PostgresStore(Store):
    """``postgresql://user[:password]@host:port/database[?table=NAME]``."""

    def __init__(self, url: str) -> None:
        self.table = table_name(url, "gearshift_jobs")
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OUR_OPTIONS]
        self.dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
        host = parts.hostname or "localhost"
        self.description = f"PostgreSQL at {host}:{parts.port or 5432}{parts.path}"
        self.url = redact(url)
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def _call(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        async with self._lock:
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                return await fn(self._conn)
            except StoreError:
                await self._drop()
                raise
            except Exception as exc:
                # Any driver exception (PostgresError, InterfaceError, OSError, and
                # asyncpg's InternalClientError when the server kills the session)
                # means this call failed: drop the connection, the next call reconnects.
                await self._drop()
                verb = "unreachable" if what == "connect" else f"{what} failed"
                raise StoreError(f"{self.description} {verb}: {exc or type(exc).__name__}"
                                 ) from exc

    async def _connect(self) -> Any:
        import asyncpg

        try:
            conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_S,
                                         command_timeout=COMMAND_TIMEOUT_S)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"{self.description} unreachable: {exc or type(exc).__name__}"
                             ) from exc
        t = self.table
        try:
            await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (seq BIGSERIAL PRIMARY KEY, "
                "handle BYTEA NOT NULL UNIQUE, function BYTEA NOT NULL, "
                "unique_key BYTEA NOT NULL, data BYTEA NOT NULL, priority SMALLINT NOT NULL, "
                "when_to_run BIGINT NOT NULL, reducer BYTEA NOT NULL, retries INTEGER NOT NULL);"
                f"CREATE TABLE IF NOT EXISTS {t}_meta (name TEXT PRIMARY KEY, "
                "value BIGINT NOT NULL)"
            )
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def open(self) -> None:
        async def noop(conn: Any) -> None:
            return None

        await self._call("connect", noop)

    async def boot(self) -> int:
        async def bump(conn: Any) -> int:
            value: int = await conn.fetchval(
                f"INSERT INTO {self.table}_meta VALUES ('boot', 1) ON CONFLICT (name) "
                f"DO UPDATE SET value = {self.table}_meta.value + 1 RETURNING value")
            return value

        return await self._call("boot counter update", bump)

    async def load(self) -> list[StoredJob]:
        async def read(conn: Any) -> list[StoredJob]:
            rows = await conn.fetch(
                "SELECT handle, function, unique_key, data, priority, when_to_run, reducer, "
                f"retries FROM {self.table} ORDER BY seq")
            return [StoredJob(*row) for row in rows]

        return await self._call("load", read)

    async def apply(self, batch: Batch) -> None:
        batch = batch.normalized()
        if not batch:
            return
        a, r = batch.adds, batch.retries
        args = ([j.handle for j in a], [j.function for j in a], [j.unique for j in a],
                [j.data for j in a], [j.priority for j in a], [j.when for j in a],
                [j.reducer for j in a], [j.retries for j in a], batch.removes, list(r),
                list(r.values()))

        async def write(conn: Any) -> None:
            # One statement is one implicit transaction and one round trip. Its parts
            # cannot see each other's rows, which is fine: a normalized batch never
            # touches one handle twice.
            await conn.execute(self._apply_sql, *args)

        await self._call("write", write)

    @property
    def _apply_sql(self) -> str:
        t = self.table
        return (
            f"WITH ins AS (INSERT INTO {t} (handle, function, unique_key, data, priority, "
            "when_to_run, reducer, retries) SELECT h, f, u, d, p, w, r, n FROM "
            "unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::smallint[], "
            "$6::bigint[], $7::bytea[], $8::int[]) WITH ORDINALITY "
            "AS x(h, f, u, d, p, w, r, n, o) ORDER BY o), "
            f"del AS (DELETE FROM {t} WHERE handle = ANY($9::bytea[])), "
            f"upd AS (UPDATE {t} SET retries = y.n FROM unnest($10::bytea[], $11::int[]) "
            f"AS y(h, n) WHERE {t}.handle = y.h) SELECT 1"
        )

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT_S)
                except Exception:  # closing politely is best effort
                    conn.terminate()
