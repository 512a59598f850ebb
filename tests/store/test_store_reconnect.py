"""A store whose service drops it mid-life reports StoreError, then reconnects.

The shared PostgreSQL/MariaDB/Redis services are never stopped: the test kills only
the store's own server-side connection. memcached is a private child process, stopped
and started again on the same port.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio
from conftest import PG, REDIS, Backend, Memcached, _backend
from test_store_conformance import job, opened, run

from gearshift.store import Batch, GroupCommitter, StoreError, open_store


async def kill_connection(backend: Backend, store: Any) -> None:
    """Make the server drop the store's connection, as a restart or failover would."""
    if backend.name == "postgresql":
        pid = store._conn.get_server_pid()
        admin = await asyncpg.connect(PG)
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        await admin.close()
    elif backend.name == "mysql":
        import aiomysql

        thread = store._conn.thread_id()
        admin = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", db="test")
        async with admin.cursor() as cur:
            await cur.execute(f"KILL {int(thread)}")
        admin.close()
    else:
        ident = await store._client.client_id()
        admin = redis.asyncio.Redis.from_url(REDIS)
        await admin.client_kill_filter(_id=ident)
        await admin.aclose()


@pytest.fixture(params=["postgresql", "mysql", "redis"])
def shared_service(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Backend]:
    yield from _backend(request, str(tmp_path), request.param)


def test_killed_connection_reconnects(shared_service: Backend) -> None:
    backend = shared_service

    async def body() -> None:
        store = await opened(backend)
        await store.apply(Batch(adds=[job(1)]))
        await kill_connection(backend, store)
        # The first write after the kill may fail (StoreError, never a driver error) or,
        # where the driver retries by itself (redis-py), succeed; either way nothing is
        # half-stored and the following write reconnects.
        stored = [job(1)]
        error = ""
        try:
            await store.apply(Batch(adds=[job(2)]))
            stored.append(job(2))
        except StoreError as exc:
            error = str(exc)
        assert not error or store.description in error
        await store.apply(Batch(adds=[job(3)]))
        stored.append(job(3))
        assert await store.load() == stored
        await store.close()

    run(body)


def test_memcached_down_then_back(private_memcached: Memcached) -> None:
    url = private_memcached.url + "?prefix=down:"

    async def body() -> None:
        store = open_store(url, data_dir="/nonexistent")
        await store.open()
        committer = GroupCommitter(store, min_backoff=0.01, max_backoff=0.05)
        await committer.add(job(1))
        private_memcached.stop()
        with pytest.raises(StoreError, match=r"memcached at 127\.0\.0\.1.*unreachable"):
            await committer.add(job(2))
        committer.remove(job(1).handle)  # queued while down, must not be dropped
        private_memcached.start()  # same port, empty (memcached keeps nothing on restart)
        await committer.add(job(3))
        await committer.close()
        assert [j.handle for j in await store.load()] == [job(3).handle]
        await store.close()

    run(body)


def test_committer_keeps_removes_across_a_failed_batch(shared_service: Backend) -> None:
    """A remove queued with a failing batch is written by the next successful one."""
    backend = shared_service

    async def body() -> None:
        store = await opened(backend)
        committer = GroupCommitter(store, min_backoff=0.01, max_backoff=0.05)
        await committer.add(job(1))
        await committer.add(job(2))
        committer.remove(job(1).handle)
        failing = committer.add(job(2))  # duplicate handle: this batch fails as a whole
        with pytest.raises(StoreError):
            await failing
        await committer.add(job(3))
        await committer.close()
        assert [j.handle for j in await store.load()] == [job(2).handle, job(3).handle]
        await store.close()

    run(body)
