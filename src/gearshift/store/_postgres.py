"""PostgreSQL store on asyncpg (extra ``gearshift[postgres]``).

One connection; each batch is ONE statement (so one implicit transaction and one round
trip) whatever its size: adds go in as arrays through ``unnest`` (WITH ORDINALITY keeps
insertion order for the ``seq`` column), removes as ``handle = ANY(...)``, retry counts
and run-at times as one ``UPDATE ... FROM unnest``, outcome and schedule upserts as
``INSERT ... FROM unnest ... ON CONFLICT DO UPDATE`` and their deletes as ``= ANY``, each
in its own data-modifying CTE. Only the parts a batch uses are in its statement, so the
hot path (adds and removes) stays the statement it was; asyncpg prepares each variant
once. PostgreSQL's default ``synchronous_commit = on`` makes a commit durable.

Tables: ``<table>``, ``<table>_meta``, ``<table>_outcomes``, ``<table>_schedules``,
``<table>_flows`` (admin flow settings); times are ``DOUBLE PRECISION`` (exact for a
Python float). A job table made by an older version gains its ``submitted`` and
``owner`` columns on first connect.

Several servers may share the tables (``shared``): after :meth:`PostgresStore.claim`
every job row carries its owner, every batch is fenced by the server's lease epoch, and
:meth:`PostgresStore.renew` keeps the lease and adopts dead servers' jobs (SQL in
:mod:`._pg_cluster`). Without a claim (``gearshift import``, benchmarks) rows have no
owner and nothing is fenced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gearshift.store import _pg_cluster as cluster
from gearshift.store._base import (
    Batch,
    JobRow,
    LeaseInfo,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
)
from gearshift.store._open import query_option, redact, table_name
from gearshift.store._pg_cluster import fence_cte
from gearshift.store._record import pack_reasons, unpack_reasons

T = TypeVar("T")

#: Give up connecting after this long (an unreachable host must fail startup promptly).
CONNECT_TIMEOUT_S = 5.0
#: Any single statement taking longer than this counts as a failed write.
COMMAND_TIMEOUT_S = 30.0

#: Query options read here rather than by asyncpg: ours, and libpq's connect_timeout
#: (from gearmand's --libpq-conninfo), which asyncpg would send to the server as a setting.
_OUR_OPTIONS = ("table", "connect_timeout")


class PostgresStore(Store):
    """``postgresql://user[:password]@host:port/database[?table=NAME]``.

    asyncpg reads libpq's query options itself (``sslmode``, ``sslrootcert``...,
    ``host=/socket/dir``), so a URL made from gearmand's --libpq-conninfo keeps them;
    ``connect_timeout`` (seconds) replaces the default of 5.
    """

    def __init__(self, url: str) -> None:
        self.table = table_name(url, "gearshift_jobs")
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _OUR_OPTIONS]
        self.dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))
        if "//" not in self.dsn:  # urlunsplit drops an empty authority: postgresql:///db
            self.dsn = self.dsn.replace("postgresql:", "postgresql://", 1)
        timeout = query_option(url, "connect_timeout", "")
        try:
            self.connect_timeout = float(timeout) if timeout else CONNECT_TIMEOUT_S
        except ValueError:
            raise ValueError(f"connect_timeout {timeout!r} is not a number of seconds"
                             ) from None
        if self.connect_timeout <= 0:  # libpq: 0 = wait forever; startup must not hang
            self.connect_timeout = CONNECT_TIMEOUT_S
        host = parts.hostname or query_option(url, "host", "") or "localhost"
        where = host if host.startswith("/") else f"{host}:{parts.port or 5432}"
        self.description = f"PostgreSQL at {where}{parts.path}"
        self.url = redact(url)
        self._conn: Any = None
        self._lock = asyncio.Lock()
        #: (server id, lease epoch, lease seconds) once claimed; None: no owner, no fence
        self._claim: tuple[str, int, float] | None = None
        self._leases: list[LeaseInfo] = []  # as the last renewal saw them

    shared = True

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
            conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout,
                                         command_timeout=COMMAND_TIMEOUT_S)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"{self.description} unreachable: {exc or type(exc).__name__}"
                             ) from exc
        try:
            await _create_schema(conn, self.table)
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
        claim = self._claim

        async def read(conn: Any) -> list[StoredJob]:
            if claim is None:
                rows = await conn.fetch(
                    f"SELECT {cluster.JOB_COLUMNS} FROM {self.table} ORDER BY seq")
            else:
                rows = await conn.fetch(f"SELECT {cluster.JOB_COLUMNS} FROM {self.table} "
                                        "WHERE owner = $1 ORDER BY seq", claim[0])
            return [StoredJob(*row) for row in rows]

        return await self._call("load", read)

    # ------------------------------------------------- deep queues (paging)

    pageable = True

    def _owned(self, args: list[Any]) -> str:
        """The condition that keeps a claimed server to its own rows (appends its id)."""
        if self._claim is None:
            return ""
        args.append(self._claim[0])
        return f" AND owner = ${len(args)}"

    async def load_chunk(self, after: int, limit: int) -> list[JobRow]:
        args: list[Any] = [after, limit]
        sql = (f"SELECT seq, {cluster.JOB_COLUMNS} FROM {self.table} WHERE seq > $1"
               f"{self._owned(args)} ORDER BY seq LIMIT $2")

        async def read(conn: Any) -> list[JobRow]:
            return [tuple(row) for row in await conn.fetch(sql, *args)]

        return await self._call("load", read)

    async def load_page(self, function: bytes, priority: int, after: int, limit: int,
                        start: bytes = b"") -> list[JobRow]:
        args: list[Any] = [function, priority, after, limit, start]
        # A start job that is no longer stored leaves the bound at ``after``.
        sql = (f"SELECT seq, {cluster.JOB_COLUMNS} FROM {self.table} WHERE function = $1 "
               "AND priority = $2 AND seq > GREATEST($3, COALESCE((SELECT seq - 1 FROM "
               f"{self.table} WHERE handle = $5), $3)){self._owned(args)} "
               "ORDER BY seq LIMIT $4")

        async def read(conn: Any) -> list[JobRow]:
            return [tuple(row) for row in await conn.fetch(sql, *args)]

        return await self._call("load", read)

    async def load_jobs(self, handles: list[bytes]) -> list[StoredJob]:
        args: list[Any] = [handles]
        sql = (f"SELECT {cluster.JOB_COLUMNS} FROM {self.table} WHERE handle = ANY($1)"
               f"{self._owned(args)}")

        async def read(conn: Any) -> list[StoredJob]:
            return [StoredJob(*row) for row in await conn.fetch(sql, *args)]

        return await self._call("load", read)

    async def load_outcomes(self) -> list[StoredOutcome]:
        async def read(conn: Any) -> list[StoredOutcome]:
            rows = await conn.fetch(f"SELECT {_OUTCOME_COLUMNS} FROM {self.table}_outcomes "
                                    "ORDER BY ended, seq")
            return [StoredOutcome(h, f, u, state, result, attempts, submitted, started, ended,
                                  dead, data, p, r, unpack_reasons(reasons))
                    for (h, f, u, state, result, attempts, submitted, started, ended, dead,
                         data, p, r, reasons) in rows]

        return await self._call("load", read)

    async def load_schedules(self) -> list[StoredSchedule]:
        async def read(conn: Any) -> list[StoredSchedule]:
            rows = await conn.fetch(f"SELECT {_SCHEDULE_COLUMNS} FROM {self.table}_schedules "
                                    "ORDER BY seq")
            return [StoredSchedule(*row) for row in rows]

        return await self._call("load", read)

    async def load_flows(self) -> dict[bytes, str]:
        async def read(conn: Any) -> dict[bytes, str]:
            rows = await conn.fetch(f"SELECT function, setting FROM {self.table}_flows "
                                    "ORDER BY seq")
            return {bytes(name): str(setting) for name, setting in rows}

        return await self._call("load", read)

    async def apply(self, batch: Batch) -> None:
        batch = batch.normalized()
        if not batch:
            return
        claim = self._claim
        sql, args = _apply_statement(self.table, batch,
                                     None if claim is None else (claim[0], claim[1]))

        async def write(conn: Any) -> None:
            # One statement is one implicit transaction and one round trip. Its parts
            # cannot see each other's rows, which is fine: a normalized batch never
            # touches one handle (or one schedule key) twice.
            if claim is None:
                await conn.execute(sql, *args)
            elif not await conn.fetchval(sql, *args):
                raise cluster.fenced(claim[0], claim[1], self.description)

        await self._call("write", write)

    # ------------------------------------------------- several servers, one store

    async def claim(self, server_id: str, lease: float) -> bool:
        async def take(conn: Any) -> tuple[int, bool]:
            return await cluster.claim(conn, self.table, server_id, lease)

        epoch, live = await self._call("lease claim", take)
        self._claim = (server_id, epoch, lease)
        return live

    async def renew(self) -> tuple[list[str], list[StoredJob]]:
        if self._claim is None:
            return [], []
        server_id, epoch, lease = self._claim

        async def extend(conn: Any) -> tuple[list[str], list[StoredJob]]:
            ok, infos = await cluster.renew(conn, self.table, server_id, epoch, lease)
            if not ok:
                raise cluster.fenced(server_id, epoch, self.description)
            self._leases = infos
            dead = cluster.expired(infos, server_id)
            if not dead:
                return [], []
            return await cluster.adopt(conn, self.table, server_id, epoch, dead,
                                       self.description)

        return await self._call("lease renewal", extend)

    async def release(self) -> None:
        if self._claim is None:
            return
        server_id, epoch, _ = self._claim

        async def expire(conn: Any) -> None:
            await cluster.release(conn, self.table, server_id, epoch)

        await self._call("lease release", expire)

    def cluster_view(self) -> list[LeaseInfo]:
        return list(self._leases)

    async def leases(self) -> list[LeaseInfo]:
        async def read(conn: Any) -> list[LeaseInfo]:
            return await cluster.leases(conn, self.table)

        return await self._call("lease listing", read)

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT_S)
                except Exception:  # closing politely is best effort
                    conn.terminate()


_OUTCOME_COLUMNS = ("handle, function, unique_key, state, result, attempts, submitted, "
                    "started, ended, dead, data, priority, reducer, reasons")
_SCHEDULE_COLUMNS = "skey, function, unique_key, cron, data, priority, last_fired"
_OUTCOME_TYPES = ("bytea", "bytea", "bytea", "text", "bytea", "bigint", "float8", "float8",
                  "float8", "boolean", "bytea", "smallint", "bytea", "bytea")
_SCHEDULE_TYPES = ("bytea", "bytea", "bytea", "text", "bytea", "smallint", "float8")


async def _create_schema(conn: Any, t: str) -> None:
    """Create missing tables; add ``submitted`` and ``owner`` to a job table made before
    they existed (``owner`` NULL: the next server to claim the store takes the rows).

    The ALTER runs only when a column is missing: it takes an exclusive lock, which
    every reconnect would otherwise queue behind the table's readers and writers for.
    """
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {t} (seq BIGSERIAL PRIMARY KEY, "
        "handle BYTEA NOT NULL UNIQUE, function BYTEA NOT NULL, "
        "unique_key BYTEA NOT NULL, data BYTEA NOT NULL, priority SMALLINT NOT NULL, "
        "when_to_run BIGINT NOT NULL, reducer BYTEA NOT NULL, retries INTEGER NOT NULL, "
        "submitted DOUBLE PRECISION NOT NULL DEFAULT 0, owner TEXT);"
        f"{cluster.lease_schema(t)};"
        f"CREATE TABLE IF NOT EXISTS {t}_meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);"
        f"CREATE TABLE IF NOT EXISTS {t}_outcomes (seq BIGSERIAL PRIMARY KEY, "
        "handle BYTEA NOT NULL UNIQUE, function BYTEA NOT NULL, unique_key BYTEA NOT NULL, "
        "state TEXT NOT NULL, result BYTEA NOT NULL, attempts BIGINT NOT NULL, "
        "submitted DOUBLE PRECISION NOT NULL, started DOUBLE PRECISION NOT NULL, "
        "ended DOUBLE PRECISION NOT NULL, dead BOOLEAN NOT NULL, data BYTEA NOT NULL, "
        "priority SMALLINT NOT NULL, reducer BYTEA NOT NULL, reasons BYTEA NOT NULL);"
        f"CREATE TABLE IF NOT EXISTS {t}_schedules (seq BIGSERIAL PRIMARY KEY, "
        "skey BYTEA NOT NULL UNIQUE, function BYTEA NOT NULL, unique_key BYTEA NOT NULL, "
        "cron TEXT NOT NULL, data BYTEA NOT NULL, priority SMALLINT NOT NULL, "
        "last_fired DOUBLE PRECISION NOT NULL);"
        f"CREATE TABLE IF NOT EXISTS {t}_flows (seq BIGSERIAL PRIMARY KEY, "
        "function BYTEA NOT NULL UNIQUE, setting TEXT NOT NULL)"
    )
    present = set(await conn.fetchval(
        "SELECT array_agg(attname::text) FROM pg_attribute WHERE attrelid = to_regclass($1) "
        "AND attname IN ('submitted', 'owner') AND NOT attisdropped", t) or ())
    missing = [f"ADD COLUMN IF NOT EXISTS {column}" for name, column in (
        ("submitted", "submitted DOUBLE PRECISION NOT NULL DEFAULT 0"),
        ("owner", "owner TEXT")) if name not in present]
    if missing:
        await conn.execute(f"ALTER TABLE {t} {', '.join(missing)}")
    # A deep queue's pages (load_page) are read by function and priority in seq order.
    present = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{t}_page")
    if not present:
        await conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_page ON {t} "
                           "(function, priority, seq)")


def _apply_statement(t: str, batch: Batch, fence: tuple[str, int] | None = None
                     ) -> tuple[str, list[Any]]:
    """The one statement (and its arguments) that writes a normalized ``batch``.

    With ``fence`` (server id, lease epoch) every part writes only while that epoch is
    current (the CTE ``ok``), new rows get the server as owner, deletes and updates
    touch only its own rows, and the statement returns 1 when it wrote (0: fenced).
    """
    args: list[Any] = []
    ctes: list[str] = []
    owner = mine = only = ""
    if fence is not None:
        args.extend(fence)
        ctes.append(fence_cte(t, 1, 2))
        owner, mine, only = ", owner", " AND owner = $1", " WHERE EXISTS (SELECT 1 FROM ok)"
    ok = only.replace(" WHERE ", " AND ")

    def unnest(types: tuple[str, ...], columns: list[list[Any]]) -> str:
        first = len(args) + 1
        args.extend(columns)
        return ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(types))

    def tuples(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
        return [list(c) for c in zip(*rows, strict=True)] if rows else [[]] * width

    if batch.adds:
        a = batch.adds
        cols = unnest(("bytea", "bytea", "bytea", "bytea", "smallint", "bigint", "bytea", "int",
                       "float8"),
                      [[j.handle for j in a], [j.function for j in a], [j.unique for j in a],
                       [j.data for j in a], [j.priority for j in a], [j.when for j in a],
                       [j.reducer for j in a], [j.retries for j in a],
                       [j.submitted for j in a]])
        ctes.append(f"ins AS (INSERT INTO {t} (handle, function, unique_key, data, priority, "
                    f"when_to_run, reducer, retries, submitted{owner}) "
                    f"SELECT h, f, u, d, p, w, r, n, s{owner and ', $1'} FROM unnest({cols}) "
                    f"WITH ORDINALITY AS x(h, f, u, d, p, w, r, n, s, o){only} ORDER BY o)")
    if batch.removes:
        ctes.append(f"del AS (DELETE FROM {t} "
                    f"WHERE handle = ANY({unnest(('bytea',), [batch.removes])}){mine}{ok})")
    if batch.retries or batch.when:
        # One UPDATE for both: two in one statement must not touch the same row. NULL
        # in either array keeps the stored value.
        handles = list(dict.fromkeys([*batch.retries, *batch.when]))
        cols = unnest(("bytea", "int", "bigint"),
                      [handles, [batch.retries.get(h) for h in handles],
                       [batch.when.get(h) for h in handles]])
        ctes.append(f"upd AS (UPDATE {t} SET retries = COALESCE(y.n, {t}.retries), "
                    f"when_to_run = COALESCE(y.w, {t}.when_to_run) FROM unnest({cols}) "
                    f"AS y(h, n, w) WHERE {t}.handle = y.h{mine}{ok})")
    stored = [o for o in batch.outcomes.values() if o is not None]
    if stored:
        rows = [(o.handle, o.function, o.unique, o.state, o.result, o.attempts, o.submitted,
                 o.started, o.ended, o.dead, o.data, o.priority, o.reducer,
                 pack_reasons(o.reasons)) for o in stored]
        cols = unnest(_OUTCOME_TYPES, tuples(rows, len(_OUTCOME_TYPES)))
        names = _OUTCOME_COLUMNS.split(", ")
        # A replaced outcome takes a new seq: it moves to the end of insertion order,
        # which breaks ties between equal ``ended`` times as the memory store does.
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in names[1:])
        ctes.append(f"oup AS (INSERT INTO {t}_outcomes ({_OUTCOME_COLUMNS}) "
                    f"SELECT {_OUTCOME_COLUMNS} FROM unnest({cols}) WITH ORDINALITY "
                    f"AS x({_OUTCOME_COLUMNS}, o){only} ORDER BY o "
                    "ON CONFLICT (handle) DO UPDATE "
                    f"SET {updates}, seq = nextval(pg_get_serial_sequence('{t}_outcomes', "
                    "'seq')))")
    gone = [h for h, o in batch.outcomes.items() if o is None]
    if gone:
        ctes.append(f"odel AS (DELETE FROM {t}_outcomes "
                    f"WHERE handle = ANY({unnest(('bytea',), [gone])}){ok})")
    kept = [s for s in batch.schedules.values() if s is not None]
    if kept:
        srows = [(s.key, s.function, s.unique, s.cron, s.data, s.priority, s.last_fired)
                 for s in kept]
        cols = unnest(_SCHEDULE_TYPES, tuples(srows, len(_SCHEDULE_TYPES)))
        # An updated schedule keeps its seq: schedules load in first-stored order.
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _SCHEDULE_COLUMNS.split(", ")[1:])
        ctes.append(f"sup AS (INSERT INTO {t}_schedules ({_SCHEDULE_COLUMNS}) "
                    f"SELECT {_SCHEDULE_COLUMNS} FROM unnest({cols}) WITH ORDINALITY "
                    f"AS x({_SCHEDULE_COLUMNS}, o){only} ORDER BY o "
                    f"ON CONFLICT (skey) DO UPDATE SET {updates})")
    dropped = [k for k, s in batch.schedules.items() if s is None]
    if dropped:
        ctes.append(f"sdel AS (DELETE FROM {t}_schedules "
                    f"WHERE skey = ANY({unnest(('bytea',), [dropped])}){ok})")
    flows = [(name, text) for name, text in batch.flows.items() if text is not None]
    if flows:
        cols = unnest(("bytea", "text"), tuples(flows, 2))
        ctes.append(f"fup AS (INSERT INTO {t}_flows (function, setting) "
                    f"SELECT f, s FROM unnest({cols}) WITH ORDINALITY AS x(f, s, o){only} "
                    "ORDER BY o ON CONFLICT (function) DO UPDATE SET setting = EXCLUDED.setting)")
    unflowed = [name for name, text in batch.flows.items() if text is None]
    if unflowed:
        ctes.append(f"fdel AS (DELETE FROM {t}_flows "
                    f"WHERE function = ANY({unnest(('bytea',), [unflowed])}){ok})")
    if fence is not None:
        return f"WITH {', '.join(ctes)} SELECT count(*) FROM ok", args
    return f"WITH {', '.join(ctes)} SELECT 1", args
