"""The storage conformance suite, part two: outcomes, dead letters, schedules, run-at
times and the layout of the previous version, on every backend (see
test_store_conformance.py for the fixtures' meaning)."""

from __future__ import annotations

import asyncio
import dataclasses
import os

import pytest
from conftest import Backend
from test_store_conformance import (
    EVERY_BYTE,
    job,
    opened,
    outcome,
    reopen,
    run,
    same,
    schedule,
)

from gearshift.store import (
    Batch,
    GroupCommitter,
    StoreError,
)


def test_outcome_round_trip_every_field(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        stored = outcome(
            1, handle=b"H:\x00\xff:1", function=b"f\x00\xff", unique=b"u\x00\xfe",
            state="exception", result=b"\x00" + os.urandom(1024 * 1024) + b"\xff",
            attempts=7, submitted=1_765_432_109.876_543_3, started=1_765_432_110.001,
            ended=1_765_432_111.999, data=EVERY_BYTE, priority=2, reducer=b"r\x00\xff",
            reasons=[b"", b"\x00", EVERY_BYTE, b"timeout"])
        plain = outcome(2, result=b"", submitted=0.0, started=0.0)
        await store.apply(Batch(outcomes={stored.handle: stored, plain.handle: plain}))
        store = await reopen(backend, store)
        same(await store.load_outcomes(), [plain, stored])  # oldest end first
        assert await store.load() == []  # outcomes are not jobs
        await store.close()

    run(body)


def test_outcome_upsert_replaces_the_whole_record(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        first = outcome(1, ended=100.0, state="failed", attempts=2, data=b"payload",
                        reasons=[b"a", b"b"])
        other = outcome(2, ended=100.0)
        await store.apply(Batch(outcomes={first.handle: first}))
        await store.apply(Batch(outcomes={other.handle: other}))
        replaced = outcome(1, ended=100.0, state="complete", result=b"done", attempts=3)
        await store.apply(Batch(outcomes={first.handle: replaced}))
        store = await reopen(backend, store)
        # Nothing of the first version is left (data, reasons), and the replaced record
        # is the newest of the two with equal end times.
        same(await store.load_outcomes(), [other, replaced])
        await store.close()

    run(body)


def test_outcome_delete_removes_only_that_one(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        kept = [outcome(n) for n in range(4)]
        await store.apply(Batch(outcomes={o.handle: o for o in kept}))
        await store.apply(Batch(outcomes={kept[1].handle: None, b"H:never-stored": None}))
        store = await reopen(backend, store)
        same(await store.load_outcomes(), [kept[0], kept[2], kept[3]])
        await store.close()

    run(body)


def test_outcomes_load_oldest_end_first(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        ends = [30.5, 10.0, 20.25, 10.0, 5.0]
        made = [outcome(n, ended=e) for n, e in enumerate(ends)]
        await store.apply(Batch(outcomes={o.handle: o for o in made[:3]}))
        await store.apply(Batch(outcomes={o.handle: o for o in made[3:]}))
        store = await reopen(backend, store)
        # Equal end times keep insertion order (outcome 1 before outcome 3).
        same(await store.load_outcomes(), [made[4], made[1], made[3], made[2], made[0]])
        await store.close()

    run(body)


def test_dead_letters_round_trip(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        dead = outcome(1, state="dead", dead=True, result=b"last reason", attempts=3,
                       data=b"\x00job payload\xff", priority=0, reducer=b"sum",
                       reasons=[b"first\x00", b"second", b"last reason"])
        await store.apply(Batch(outcomes={dead.handle: dead}))
        store = await reopen(backend, store)
        loaded = await store.load_outcomes()
        same(loaded, [dead])
        assert loaded[0].dead is True
        await store.apply(Batch(outcomes={dead.handle: None}))  # retried or purged
        store = await reopen(backend, store)
        assert await store.load_outcomes() == []
        await store.close()

    run(body)


def test_schedules_round_trip_upsert_delete_and_order(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        first = schedule(1, key=b"S\x00\xff1", function=b"f\x00\xff", unique=b"u\xfe",
                         data=EVERY_BYTE, priority=0, last_fired=1_765_432_109.876_543_3)
        made = [first, schedule(2), schedule(3, cron="0 3 1 * *", data=b"")]
        await store.apply(Batch(schedules={s.key: s for s in made}))
        store = await reopen(backend, store)
        same(await store.load_schedules(), made)
        # An update keeps the schedule's place; a delete removes only that one.
        fired = schedule(1, key=first.key, cron="15 * * * *", data=b"new", priority=2,
                         last_fired=1_765_432_200.0)
        await store.apply(Batch(schedules={first.key: fired, made[1].key: None,
                                           b"never-stored": None}))
        await store.apply(Batch(schedules={b"S4": schedule(4)}))
        store = await reopen(backend, store)
        same(await store.load_schedules(), [fired, made[2], schedule(4)])
        await store.close()

    run(body)


def test_submitted_round_trips(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        jobs = [job(1, submitted=1_765_432_109.876_543_3), job(2)]
        await store.apply(Batch(adds=jobs))
        store = await reopen(backend, store)
        same(await store.load(), jobs)
        await store.close()

    run(body)


def test_when_updates_survive_restart(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        await store.apply(Batch(adds=[job(1), job(2, when=1_800_000_000)]))
        await store.apply(Batch(retries={b"H:test:1": 1}, when={b"H:test:1": 1_900_000_000,
                                                                b"H:gone": 5}))
        await store.apply(Batch(when={b"H:test:2": 4_102_444_800}))
        # A when and a retry count for a job added in the same batch are folded into it.
        await store.apply(Batch(adds=[job(3)], retries={b"H:test:3": 2},
                                when={b"H:test:3": 2_000_000_000}))
        store = await reopen(backend, store)
        assert [(j.handle, j.retries, j.when) for j in await store.load()] == [
            (b"H:test:1", 1, 1_900_000_000), (b"H:test:2", 0, 4_102_444_800),
            (b"H:test:3", 2, 2_000_000_000)]
        await store.close()

    run(body)


def test_outcome_and_job_removal_commit_together(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        await store.apply(Batch(adds=[job(1), job(2), job(4)], schedules={b"S1": schedule(1)},
                                outcomes={b"H:old": outcome(0, handle=b"H:old")}))
        done = outcome(1)
        await store.apply(Batch(removes=[b"H:test:1"], outcomes={done.handle: done}))
        store = await reopen(backend, store)
        assert [j.handle for j in await store.load()] == [b"H:test:2", b"H:test:4"]
        same(await store.load_outcomes(), [outcome(0, handle=b"H:old"), done])
        # A failing batch (a duplicate handle) stores none of its parts.
        with pytest.raises(StoreError, match=r"H:test:2|handle|uplicate|nique"):
            await store.apply(Batch(
                adds=[job(3), job(2, data=b"other")], removes=[b"H:test:4"],
                retries={b"H:test:2": 9}, when={b"H:test:2": 1_900_000_000},
                outcomes={b"H:test:2": outcome(2), done.handle: None},
                schedules={b"S1": None, b"S2": schedule(2)}))
        store = await reopen(backend, store)
        same(await store.load(), [job(2), job(4)])
        same(await store.load_outcomes(), [outcome(0, handle=b"H:old"), done])
        same(await store.load_schedules(), [schedule(1)])
        await store.close()

    run(body)


def test_committer_writes_outcomes_schedules_and_run_times(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        committer = GroupCommitter(store)
        await asyncio.gather(committer.add(job(1)), committer.add(job(2)))
        committer.set_retries(b"H:test:1", 2, 1_900_000_000)
        committer.set_retries(b"H:test:2", 1)
        committer.remove(b"H:test:2")
        committer.put_outcome(b"H:test:2", outcome(2, state="failed"))
        committer.put_outcome(b"H:test:9", outcome(9))
        committer.put_outcome(b"H:test:9", None)  # the last write wins
        committer.put_schedule(b"S1", schedule(1))
        committer.put_schedule(b"S2", schedule(2))
        await committer.flush()
        committer.put_schedule(b"S1", None)
        await committer.close()
        store = await reopen(backend, store)
        assert [(j.handle, j.retries, j.when) for j in await store.load()] == [
            (b"H:test:1", 2, 1_900_000_000)]
        same(await store.load_outcomes(), [outcome(2, state="failed")])
        same(await store.load_schedules(), [schedule(2)])
        await store.close()

    run(body)


# ------------------------------------------------------------ layouts of older versions

#: The job the previous version stored, as written by it (no ``submitted``).
LEGACY = job(1, handle=b"H:old:1", data=b"old\x00data\xff", priority=0, when=1_900_000_000,
             reducer=b"r", retries=2)

_OLD_SQLITE = ("CREATE TABLE {t} (seq INTEGER PRIMARY KEY, handle BLOB NOT NULL UNIQUE, "
               "function BLOB NOT NULL, unique_key BLOB NOT NULL, data BLOB NOT NULL, "
               "priority INTEGER NOT NULL, when_to_run INTEGER NOT NULL, "
               "reducer BLOB NOT NULL, retries INTEGER NOT NULL)")
_OLD_PG = ("CREATE TABLE {t} (seq BIGSERIAL PRIMARY KEY, handle BYTEA NOT NULL UNIQUE, "
           "function BYTEA NOT NULL, unique_key BYTEA NOT NULL, data BYTEA NOT NULL, "
           "priority SMALLINT NOT NULL, when_to_run BIGINT NOT NULL, reducer BYTEA NOT NULL, "
           "retries INTEGER NOT NULL)")
_OLD_MYSQL = ("CREATE TABLE {t} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
              "handle VARBINARY(255) NOT NULL UNIQUE, function BLOB NOT NULL, "
              "unique_key BLOB NOT NULL, data LONGBLOB NOT NULL, priority TINYINT NOT NULL, "
              "when_to_run BIGINT NOT NULL, reducer BLOB NOT NULL, retries INT NOT NULL) "
              "ENGINE=InnoDB")
_OLD_ROW = (LEGACY.handle, LEGACY.function, LEGACY.unique, LEGACY.data, LEGACY.priority,
            LEGACY.when, LEGACY.reducer, LEGACY.retries)
_OLD_INSERT = ("INSERT INTO {t} (handle, function, unique_key, data, priority, when_to_run, "
               "reducer, retries) VALUES ")


async def write_legacy_layout(backend: Backend) -> None:
    """Store LEGACY the way the version before outcomes and ``submitted`` did."""
    from urllib.parse import urlsplit

    from gearshift.store._open import query_option

    table = query_option(backend.url, "table", "")
    prefix = query_option(backend.url, "prefix", "")
    if backend.name == "sqlite":
        import sqlite3

        db = sqlite3.connect(urlsplit(backend.url).path)
        db.execute(_OLD_SQLITE.format(t=table))
        db.execute(_OLD_INSERT.format(t=table) + "(?, ?, ?, ?, ?, ?, ?, ?)", _OLD_ROW)
        db.commit()
        db.close()
    elif backend.name == "postgresql":
        import asyncpg
        from conftest import PG

        conn = await asyncpg.connect(PG)
        await conn.execute(_OLD_PG.format(t=table))
        await conn.execute(_OLD_INSERT.format(t=table) + "($1, $2, $3, $4, $5, $6, $7, $8)",
                           *_OLD_ROW)
        await conn.close()
    elif backend.name == "mysql":
        import aiomysql

        conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", db="test",
                                      autocommit=True)
        async with conn.cursor() as cur:
            await cur.execute(_OLD_MYSQL.format(t=table))
            values = ", ".join(f"X'{v.hex()}'" if isinstance(v, bytes) else str(v)
                               for v in _OLD_ROW)
            await cur.execute(_OLD_INSERT.format(t=table) + f"({values})")
        conn.close()
    elif backend.name == "redis":
        import redis.asyncio
        from conftest import REDIS

        client = redis.asyncio.Redis.from_url(REDIS)
        p = prefix.encode()
        await client.hset(p + b"job:" + LEGACY.handle, mapping={  # type: ignore[arg-type]
            b"f": LEGACY.function, b"u": LEGACY.unique, b"d": LEGACY.data, b"p": b"0",
            b"w": b"1900000000", b"r": LEGACY.reducer, b"n": b"2"})
        await client.zadd(p + b"order", {LEGACY.handle: 1})
        await client.set(p + b"seq", 1)
        await client.aclose()
    else:
        import hashlib
        import struct

        from pymemcache.client.base import Client

        from gearshift.store._record import pack_index

        j = LEGACY
        record = struct.pack(">BBqIIIII", 1, j.priority, j.when, len(j.handle),
                             len(j.function), len(j.unique), len(j.reducer), len(j.data))
        record += j.handle + j.function + j.unique + j.reducer + j.data
        parts = urlsplit(backend.url)
        client = Client((parts.hostname, parts.port))
        client.set(prefix + "j:" + hashlib.sha256(j.handle).hexdigest()[:40],
                   (1).to_bytes(4, "big") + record)
        client.set(prefix + "idx:1:0", pack_index({j.handle: j.retries}))
        client.set(prefix + "head", b"1 1")
        client.close()


def test_layout_of_the_previous_version_is_migrated(durable_backend: Backend) -> None:
    """A job table without ``submitted`` (no outcome or schedule tables), a Redis hash
    without ``s``, a version-1 memcached index and record: all load, then take new data."""
    backend = durable_backend

    async def body() -> None:
        await write_legacy_layout(backend)
        store = await opened(backend)
        assert await store.load() == [LEGACY]
        assert (await store.load())[0].submitted == 0.0
        assert await store.load_outcomes() == []
        assert await store.load_schedules() == []
        new = job(2, submitted=1_765_432_109.5)
        await store.apply(Batch(adds=[new], when={LEGACY.handle: 2_000_000_000},
                                retries={LEGACY.handle: 3}, outcomes={b"H:x": outcome(
                                    7, handle=b"H:x")}, schedules={b"S1": schedule(1)}))
        store = await reopen(backend, store)
        store = await reopen(backend, store)  # a second open finds the schema in place
        moved = dataclasses.replace(LEGACY, when=2_000_000_000, retries=3)
        same(await store.load(), [moved, new])
        same(await store.load_outcomes(), [outcome(7, handle=b"H:x")])
        same(await store.load_schedules(), [schedule(1)])
        await store.apply(Batch(removes=[LEGACY.handle]))
        store = await reopen(backend, store)
        same(await store.load(), [new])
        await store.close()

    run(body)
