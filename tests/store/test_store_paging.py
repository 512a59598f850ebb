"""The paging part of the store contract (deep queues, ``--queue-memory``): every store
that says it can page (``Store.pageable``) answers ``load_chunk``, ``load_page`` and
``load_jobs`` alike, against the real service; the others refuse with StoreError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from conftest import Backend

from gearshift.store import Batch, JobRow, Store, StoredJob, StoreError, row_job

PAGEABLE = {"sqlite", "postgresql", "mysql"}


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 50))


def job(n: int, function: bytes = b"fn", priority: int = 1, **over: object) -> StoredJob:
    fields: dict[str, object] = dict(
        handle=f"H:page:1.{n}".encode(), function=function, unique=f"u{n}".encode(),
        data=f"payload {n}".encode(), priority=priority, when=0)
    fields.update(over)
    return StoredJob(**fields)  # type: ignore[arg-type]


async def opened(backend: Backend) -> Store:
    store = backend.make()
    await store.open()
    return store


def test_which_stores_page(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        assert store.pageable == (backend.name in PAGEABLE)
        if not store.pageable:
            with pytest.raises(StoreError):
                await store.load_page(b"fn", 1, 0, 10)
            with pytest.raises(StoreError):
                await store.load_chunk(0, 10)
            with pytest.raises(StoreError):
                await store.load_jobs([b"H:x"])
        await store.close()

    run(body)


def _pageable(backend: Backend) -> None:
    if backend.name not in PAGEABLE:
        pytest.skip(f"{backend.name} does not page (Store.pageable is False)")


def test_load_chunk_replays_in_pieces_with_growing_positions(durable_backend: Backend) -> None:
    _pageable(durable_backend)

    async def body() -> None:
        store = await opened(durable_backend)
        jobs = [job(n, priority=n % 3, function=b"a" if n % 2 else b"b") for n in range(25)]
        await store.apply(Batch(adds=jobs[:10]))
        await store.apply(Batch(adds=jobs[10:], removes=[jobs[4].handle]))
        await store.close()
        store = await opened(durable_backend)  # a restart
        seen: list[JobRow] = []
        after = 0
        while True:
            chunk = await store.load_chunk(after, 7)
            assert len(chunk) <= 7
            if not chunk:
                break
            seen += chunk
            after = chunk[-1][0]
        positions = [row[0] for row in seen]
        assert positions == sorted(set(positions))
        assert positions[0] > 0
        assert [row_job(r) for r in seen] == [j for j in jobs if j is not jobs[4]]
        assert [row_job(r) for r in seen] == await store.load()
        kinds = (int, bytes, bytes, bytes, bytes, int, int, bytes, int, float)
        assert all(tuple(type(v) for v in r) == kinds for r in seen)
        await store.close()

    run(body)


def test_load_page_is_one_function_and_priority_in_order(durable_backend: Backend) -> None:
    _pageable(durable_backend)

    async def body() -> None:
        store = await opened(durable_backend)
        jobs = [job(n, function=b"a" if n % 3 else b"b", priority=n % 2) for n in range(40)]
        for i in range(0, 40, 9):  # several batches
            await store.apply(Batch(adds=jobs[i:i + 9]))
        wanted = [j for j in jobs if j.function == b"a" and j.priority == 1]
        # Paging through with the last position as the next bound gives them all, once.
        got: list[JobRow] = []
        after = 0
        while page := await store.load_page(b"a", 1, after, 4):
            assert len(page) <= 4
            got += page
            after = page[-1][0]
        assert [row_job(r) for r in got] == wanted
        assert [r[0] for r in got] == sorted(r[0] for r in got)
        # The positions are those of load_chunk.
        chunk = {r[1]: r[0] for r in await store.load_chunk(0, 1000)}
        assert all(chunk[r[1]] == r[0] for r in got)
        # ``after`` is exclusive; other functions and priorities never show.
        third = got[2][0]
        assert [row_job(r) for r in await store.load_page(b"a", 1, third, 100)] == wanted[3:]
        assert await store.load_page(b"a", 2, 0, 100) == []
        assert await store.load_page(b"missing", 1, 0, 100) == []
        await store.close()

    run(body)


def test_load_page_can_start_at_a_handle(durable_backend: Backend) -> None:
    _pageable(durable_backend)

    async def body() -> None:
        store = await opened(durable_backend)
        jobs = [job(n) for n in range(12)]
        await store.apply(Batch(adds=jobs))
        page = await store.load_page(b"fn", 1, 0, 100, start=jobs[5].handle)
        assert [row_job(r) for r in page] == jobs[5:]
        # ``after`` still bounds it when it is further on.
        sixth = page[2][0]
        assert [row_job(r) for r in await store.load_page(b"fn", 1, sixth, 100,
                                                         start=jobs[5].handle)] == jobs[8:]
        # A start job that is gone is ignored: the bound is ``after``.
        await store.apply(Batch(removes=[jobs[5].handle]))
        page = await store.load_page(b"fn", 1, 0, 100, start=jobs[5].handle)
        assert [row_job(r) for r in page] == jobs[:5] + jobs[6:]
        await store.close()

    run(body)


def test_load_jobs_finds_stored_ones_with_every_field(durable_backend: Backend) -> None:
    _pageable(durable_backend)

    async def body() -> None:
        store = await opened(durable_backend)
        odd = job(1, function=b"f\x00n", unique=b"\x00\xffu", data=b"\x00" * 3 + b"\xff",
                  priority=0, when=1_900_000_000, reducer=b"sum", retries=2,
                  submitted=1_765_432_100.5)
        jobs = [odd] + [job(n) for n in range(2, 1200)]
        await store.apply(Batch(adds=jobs))
        assert await store.load_jobs([odd.handle]) == [odd]
        wanted = [j.handle for j in jobs[::2]] + [b"H:missing"]
        found = await store.load_jobs(wanted)
        assert sorted(j.handle for j in found) == sorted(j.handle for j in jobs[::2])
        assert {j.handle: j for j in found}[jobs[2].handle] == jobs[2]
        assert await store.load_jobs([]) == []
        await store.close()

    run(body)
