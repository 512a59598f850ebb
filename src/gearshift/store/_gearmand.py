"""Reading gearmand's persistent-queue layouts, to migrate queued jobs into a Store.

gearmand's plugins key a job by (unique, function) and keep no handle or retry count
(reference/gearmand.md section 5.2). We read the rows as they are, assign fresh handles
that embed the target store's boot counter (so they can never collide with a handle a
gearshift server hands out), and write them in batches through :meth:`Store.apply`.
Jobs already in the target with the same non-empty unique key and function are skipped,
so running the import twice does not duplicate work.

Sources::

    gearmand-sqlite:///path/queue.db    table gearman_queue   (-q libsqlite3)
    gearmand-mysql://user:pw@host/db    table gearman_queue   (-q mysql)
    gearmand-postgres://user@host/db    table queue           (-q postgres)
    gearmand-redis://host:port/db       key prefix _gear_     (-q redis)
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from gearshift.store._base import Batch, Store, StoredJob, StoreError

#: Jobs written per transaction while importing.
IMPORT_BATCH = 1000

DEFAULT_TABLES = {"sqlite": "gearman_queue", "mysql": "gearman_queue", "postgres": "queue"}
DEFAULT_REDIS_PREFIX = "_gear_"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")


@dataclass(slots=True)
class GearmandJob:
    """One row of a gearmand queue, as gearmand itself would replay it."""

    unique: bytes
    function: bytes
    priority: int
    data: bytes
    when: int


def _b(value: Any) -> bytes:
    """Column values arrive as str for VARCHAR, bytes/memoryview for BLOB/BYTEA."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def _priority(value: Any) -> int:
    number = int(value if value not in (None, b"", "") else 1)
    return number if number in (0, 1, 2) else 1


def _when(value: Any) -> int:
    """gearmand's MySQL/PostgreSQL tables hold run-at times in a 32-bit INT column, so
    times past 2038 come back negative; undo that wrap-around."""
    number = int(value or 0)
    return number + 2**32 if number < 0 else number


async def read_gearmand_queue(url: str, *, table: str | None = None,
                              prefix: str | None = None) -> list[GearmandJob]:
    """Every job in the gearmand queue at ``url``.

    Raises:
        ValueError: unknown source scheme or bad table name.
        StoreError: the source cannot be read (message names it).
    """
    scheme = url.split("://", 1)[0].lower()
    kind = scheme.removeprefix("gearmand-")
    if scheme == kind or kind not in ("sqlite", "mysql", "postgres", "postgresql", "redis"):
        raise ValueError(f"unknown gearmand queue {url!r}: use gearmand-sqlite:///path, "
                         "gearmand-mysql://, gearmand-postgres:// or gearmand-redis://")
    kind = "postgres" if kind == "postgresql" else kind
    if kind == "redis":
        return await _read_redis(url, prefix or DEFAULT_REDIS_PREFIX)
    name = table or DEFAULT_TABLES[kind]
    if not _IDENTIFIER.match(name):
        raise ValueError(f"table name {name!r} must be letters, digits and _")
    try:
        if kind == "sqlite":
            return await asyncio.to_thread(_read_sqlite, url, name)
        if kind == "mysql":
            return await _read_mysql(url, name)
        return await _read_postgres(url, name)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"cannot read gearmand queue {kind} table {name}: {exc}") from exc


def _read_sqlite(url: str, table: str) -> list[GearmandJob]:
    parts = urlsplit(url)
    path = parts.netloc + parts.path
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if not columns:
            raise StoreError(f"{path} has no table {table!r}")
        when = "when_to_run" if "when_to_run" in columns else "0"  # tables before 1.1.?
        rows = db.execute(f"SELECT unique_key, function_name, priority, data, {when} "
                          f"FROM {table} ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [GearmandJob(_b(u), _b(f), _priority(p), _b(d), _when(w)) for u, f, p, d, w in rows]


async def _read_mysql(url: str, table: str) -> list[GearmandJob]:
    import aiomysql

    parts = urlsplit(url)
    conn = await aiomysql.connect(
        host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
        user=unquote(parts.username or "root"), password=unquote(parts.password or ""),
        db=parts.path.lstrip("/") or "gearmand", connect_timeout=5)
    try:
        async with conn.cursor() as cur:
            await cur.execute(f"SELECT unique_key, function_name, priority, data, when_to_run "
                              f"FROM {table}")
            rows = await cur.fetchall()
    finally:
        conn.close()
    return [GearmandJob(_b(u), _b(f), _priority(p), _b(d), _when(w)) for u, f, p, d, w in rows]


async def _read_postgres(url: str, table: str) -> list[GearmandJob]:
    import asyncpg

    dsn = urlunsplit(urlsplit(url)._replace(scheme="postgresql"))
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch(f"SELECT unique_key, function_name, priority, data, "
                                f"when_to_run FROM {table} ORDER BY ctid")
    finally:
        await conn.close()
    return [GearmandJob(_b(r[0]), _b(r[1]), _priority(r[2]), _b(r[3]), _when(r[4]))
            for r in rows]


async def _read_redis(url: str, prefix: str) -> list[GearmandJob]:
    """Keys ``<prefix>-<function>-<unique>``: a string (data only, gearmand 1.1) or a hash
    with ``data``, ``priority`` and, in newer versions, ``function`` and ``unique``."""
    import redis.asyncio
    import redis.exceptions

    target = urlunsplit(urlsplit(url)._replace(scheme="redis"))
    client = redis.asyncio.Redis.from_url(target, socket_connect_timeout=5)
    head = prefix.encode() + b"-"
    jobs: list[GearmandJob] = []
    try:
        async for key in client.scan_iter(match=prefix + "-*", count=1000):
            function, _, unique = key[len(head):].partition(b"-")
            if await client.type(key) == b"hash":
                fields = await client.hgetall(key)
                jobs.append(GearmandJob(fields.get(b"unique", unique),
                                        fields.get(b"function", function),
                                        _priority(fields.get(b"priority")),
                                        _b(fields.get(b"data")), 0))
            else:
                value = await client.get(key)
                if value is not None:
                    jobs.append(GearmandJob(unique, function, 1, _b(value), 0))
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StoreError(f"cannot read gearmand redis queue at {target}: {exc}") from exc
    finally:
        await client.aclose()
    return jobs


async def import_jobs(jobs: list[GearmandJob], store: Store) -> tuple[int, int]:
    """Write ``jobs`` into the open ``store``; returns (imported, skipped as present)."""
    present = {(j.function, j.unique) for j in await store.load() if j.unique}
    boot = await store.boot()
    batch: list[StoredJob] = []
    imported = skipped = 0
    for n, job in enumerate(jobs, 1):
        if job.unique and (job.function, job.unique) in present:
            skipped += 1
            continue
        present.add((job.function, job.unique))
        batch.append(StoredJob(handle=f"H:import:{boot}.{n}".encode(), function=job.function,
                               unique=job.unique, data=job.data, priority=job.priority,
                               when=job.when))
        if len(batch) >= IMPORT_BATCH:
            await store.apply(Batch(adds=batch))
            imported += len(batch)
            batch = []
    if batch:
        await store.apply(Batch(adds=batch))
        imported += len(batch)
    return imported, skipped
