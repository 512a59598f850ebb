"""Leases, adoption and fencing of the PostgreSQL store, driven directly (no server).

Two PostgresStore objects on one private table play two servers. Leases are short
(1 s); "the lease expired" is made true by waiting past it, judged by the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from conftest import Backend, _backend
from test_store_conformance import job, outcome, run

from gearshift.store import Batch, FencedError, GroupCommitter, Store, open_store

LEASE = 1.0


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Backend]:
    yield from _backend(request, str(tmp_path), "postgresql")


async def server(backend: Backend, server_id: str) -> Store:
    store = open_store(backend.url, data_dir=backend.data_dir)
    await store.open()
    await store.claim(server_id, LEASE)
    return store


def handles(jobs: list) -> list[bytes]:
    return [j.handle for j in jobs]


def test_each_server_loads_only_its_own_jobs(pg: Backend) -> None:
    async def body() -> None:
        a, b = await server(pg, "a"), await server(pg, "b")
        await a.apply(Batch(adds=[job(1), job(2)]))
        await b.apply(Batch(adds=[job(3)]))
        assert handles(await a.load()) == [b"H:test:1", b"H:test:2"]
        assert handles(await b.load()) == [b"H:test:3"]
        # A remove of a job another server owns touches nothing.
        await a.apply(Batch(removes=[b"H:test:3"]))
        assert handles(await b.load()) == [b"H:test:3"]
        # Both leases live: a renewal adopts nothing.
        assert await a.renew() == ([], [])
        infos = {i.server_id: i for i in await a.leases()}
        assert infos["a"].jobs == 2
        assert infos["b"].jobs == 1
        assert 0 < infos["a"].expires_in <= LEASE
        await a.close()
        await b.close()

    run(body)


def test_expired_lease_is_adopted_once_and_the_old_owner_is_fenced(pg: Backend) -> None:
    async def body() -> None:
        a, b, c = await server(pg, "a"), await server(pg, "b"), await server(pg, "c")
        await a.apply(Batch(adds=[job(1), job(2, priority=0), job(3)], retries={}))
        await asyncio.sleep(LEASE + 0.3)  # nobody renews: every lease expired
        dead, adopted = await b.renew()
        assert dead == ["a", "c"]
        assert handles(adopted) == [b"H:test:1", b"H:test:2", b"H:test:3"]  # insertion order
        assert adopted[1].priority == 0
        # c's lease was adopted too (it owned nothing): c is fenced as well.
        assert await b.renew() == ([], [])  # adopted leases are not adopted again
        assert handles(await b.load()) == [b"H:test:1", b"H:test:2", b"H:test:3"]
        for fenced in (a, c):
            with pytest.raises(FencedError, match="lost its lease"):
                await fenced.renew()
        # a's writes are refused as a whole: nothing of the batch is stored.
        with pytest.raises(FencedError):
            await a.apply(Batch(adds=[job(4)], removes=[b"H:test:1"],
                                outcomes={b"H:test:1": outcome(1)}))
        assert handles(await b.load()) == [b"H:test:1", b"H:test:2", b"H:test:3"]
        assert await b.load_outcomes() == []
        # a restarts under its id: a new epoch, owning nothing it lost.
        await a.close()
        a = await server(pg, "a")
        assert await a.load() == []
        await a.apply(Batch(adds=[job(5)]))
        assert handles(await a.load()) == [b"H:test:5"]
        for store in (a, b, c):
            await store.close()

    run(body)


def test_a_second_process_with_the_same_id_fences_the_first(pg: Backend) -> None:
    async def body() -> None:
        first = await server(pg, "same")
        await first.apply(Batch(adds=[job(1)]))
        second = open_store(pg.url, data_dir=pg.data_dir)
        await second.open()
        assert await second.claim("same", LEASE) is True  # the lease was still live
        assert handles(await second.load()) == [b"H:test:1"]
        with pytest.raises(FencedError):
            await first.apply(Batch(adds=[job(2)]))
        await first.close()
        await second.close()

    run(body)


def test_committer_reports_fencing_once_and_closes(pg: Backend) -> None:
    async def body() -> None:
        a, b = await server(pg, "a"), await server(pg, "b")
        told: list[FencedError] = []
        committer = GroupCommitter(a, on_fenced=told.append)
        await committer.add(job(1))
        await asyncio.sleep(LEASE + 0.3)
        await b.renew()
        with pytest.raises(FencedError):
            await committer.add(job(2))
        assert len(told) == 1
        with pytest.raises(FencedError):  # closed: later adds fail at once
            await committer.add(job(3))
        assert handles(await b.load()) == [b"H:test:1"]
        await a.close()
        await b.close()

    run(body)


def test_release_lets_another_server_adopt_at_once(pg: Backend) -> None:
    async def body() -> None:
        a = await server(pg, "a")
        b = open_store(pg.url, data_dir=pg.data_dir)
        await b.open()
        await b.claim("b", 60.0)
        await a.apply(Batch(adds=[job(1)]))
        await a.release()
        dead, adopted = await b.renew()
        assert dead == ["a"]
        assert handles(adopted) == [b"H:test:1"]
        await a.close()
        await b.close()

    run(body)


def test_unclaimed_store_keeps_the_single_server_behaviour(pg: Backend) -> None:
    async def body() -> None:
        a = open_store(pg.url, data_dir=pg.data_dir)
        await a.open()
        await a.apply(Batch(adds=[job(1)]))
        assert handles(await a.load()) == [b"H:test:1"]
        assert await a.renew() == ([], [])
        # The first server to claim the store takes the rows written without owner.
        b = await server(pg, "b")
        assert handles(await b.load()) == [b"H:test:1"]
        await a.close()
        await b.close()

    run(body)
