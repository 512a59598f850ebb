"""The storage conformance suite: every backend, the same contract, real services.

Each test builds stores through ``backend.make()``; a second ``make()`` is a server
restart (a new Store object over the same table/prefix/file).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable

import pytest
from conftest import Backend

from gearshift.store import (
    Batch,
    GroupCommitter,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
    open_store,
)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 50))


def job(n: int, **over: object) -> StoredJob:
    fields: dict[str, object] = dict(
        handle=f"H:test:{n}".encode(), function=b"fn", unique=f"u{n}".encode(),
        data=f"payload {n}".encode(), priority=1, when=0)
    fields.update(over)
    return StoredJob(**fields)  # type: ignore[arg-type]


def outcome(n: int, **over: object) -> StoredOutcome:
    fields: dict[str, object] = dict(
        handle=f"H:test:{n}".encode(), function=b"fn", unique=f"u{n}".encode(),
        state="complete", result=f"result {n}".encode(), attempts=1,
        submitted=1_765_432_100.25, started=1_765_432_101.5, ended=1_765_432_102.0 + n)
    fields.update(over)
    return StoredOutcome(**fields)  # type: ignore[arg-type]


def schedule(n: int, **over: object) -> StoredSchedule:
    fields: dict[str, object] = dict(key=f"S{n}".encode(), function=b"report",
                                     unique=f"s{n}".encode(), cron="*/5 * * * 1-5",
                                     data=f"sched {n}".encode())
    fields.update(over)
    return StoredSchedule(**fields)  # type: ignore[arg-type]


#: Times are kept at least to the millisecond (every backend keeps them exactly).
TIMES = ("submitted", "started", "ended", "last_fired")


def same(loaded: list[object], expected: list[object]) -> None:
    """``loaded == expected``, with times compared to the millisecond."""
    assert len(loaded) == len(expected), (loaded, expected)
    for got, want in zip(loaded, expected, strict=True):
        assert dataclasses.is_dataclass(got)
        assert dataclasses.is_dataclass(want)
        for name in (f.name for f in dataclasses.fields(want)):
            a, b = getattr(got, name), getattr(want, name)
            if name in TIMES:
                assert a == pytest.approx(b, abs=1e-3), name
            else:
                assert a == b, name


async def opened(backend: Backend) -> Store:
    store = backend.make()
    await store.open()
    return store


async def reopen(backend: Backend, store: Store) -> Store:
    """Close ``store`` and open a fresh one on the same data: a server restart."""
    if backend.name != "memory":
        await store.close()
    return await opened(backend)


def test_add_load_roundtrip_every_field(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        stored = job(1, function=b"resize", unique=b"img-42", data=b"abc", priority=0,
                     when=1_900_000_000, reducer=b"sum", retries=3)
        await store.apply(Batch(adds=[stored]))
        store = await reopen(backend, store)
        assert await store.load() == [stored]
        await store.close()

    run(body)


def test_remove_deletes_only_that_job(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        await store.apply(Batch(adds=[job(1), job(2), job(3)]))
        await store.apply(Batch(removes=[b"H:test:2"]))
        await store.apply(Batch(removes=[b"H:never-stored"]))  # harmless
        store = await reopen(backend, store)
        assert [j.handle for j in await store.load()] == [b"H:test:1", b"H:test:3"]
        await store.close()

    run(body)


def test_replay_order_is_insertion_order_with_priorities_kept(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        jobs = [job(n, priority=(n * 7) % 3) for n in range(30)]
        await store.apply(Batch(adds=jobs[:10]))
        await store.apply(Batch(adds=jobs[10:25], removes=[jobs[3].handle]))
        await store.apply(Batch(adds=jobs[25:]))
        store = await reopen(backend, store)
        expected = [j for j in jobs if j is not jobs[3]]
        loaded = await store.load()
        assert [j.handle for j in loaded] == [j.handle for j in expected]
        assert [j.priority for j in loaded] == [j.priority for j in expected]
        assert {j.priority for j in loaded} == {0, 1, 2}
        await store.close()

    run(body)


def test_binary_data_with_nul_bytes_round_trips(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        every_byte = bytes(range(256)) * 4
        stored = job(1, function=b"f\xff\x01-x", unique=b"u-\x01\xfe\x7f",
                     data=b"\x00" + every_byte + b"\x00\x00", reducer=b"r\x80")
        empty = job(2, unique=b"", data=b"")
        await store.apply(Batch(adds=[stored, empty]))
        store = await reopen(backend, store)
        assert await store.load() == [stored, empty]
        await store.close()

    run(body)


def test_one_mebibyte_payloads(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        big = [job(n, data=os.urandom(1024 * 1024 + n)) for n in range(3)]
        await store.apply(Batch(adds=big))
        store = await reopen(backend, store)
        assert await store.load() == big
        await store.apply(Batch(removes=[big[1].handle]))
        assert [j.data for j in await store.load()] == [big[0].data, big[2].data]
        await store.close()

    run(body)


def test_epoch_jobs_keep_their_run_time(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        far = job(1, when=4_102_444_800)  # 2100-01-01: beyond 32-bit time_t
        soon = job(2, when=1_800_000_000, priority=2)
        await store.apply(Batch(adds=[far, soon]))
        store = await reopen(backend, store)
        assert [(j.when, j.priority) for j in await store.load()] == [
            (4_102_444_800, 1), (1_800_000_000, 2)]
        await store.close()

    run(body)


def test_retry_counts_survive_restart(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        await store.apply(Batch(adds=[job(1), job(2)]))
        await store.apply(Batch(retries={b"H:test:1": 1}))
        await store.apply(Batch(retries={b"H:test:1": 2, b"H:gone": 5}))
        store = await reopen(backend, store)
        assert [(j.handle, j.retries) for j in await store.load()] == [
            (b"H:test:1", 2), (b"H:test:2", 0)]
        await store.close()

    run(body)


def test_add_and_remove_in_one_batch_cancel_out(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        await store.apply(Batch(adds=[job(1), job(2)], removes=[b"H:test:1"],
                                retries={b"H:test:2": 4}))
        store = await reopen(backend, store)
        assert [(j.handle, j.retries) for j in await store.load()] == [(b"H:test:2", 4)]
        await store.close()

    run(body)


def test_failed_batch_stores_nothing(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        await store.apply(Batch(adds=[job(1)]))
        with pytest.raises(StoreError, match=r"H:test:1|handle|uplicate|nique"):
            await store.apply(Batch(adds=[job(2), job(1, data=b"other")]))
        # The store still works after the failure, and job 2 was not half-written.
        await store.apply(Batch(adds=[job(3)]))
        store = await reopen(backend, store)
        assert [(j.handle, j.data) for j in await store.load()] == [
            (b"H:test:1", b"payload 1"), (b"H:test:3", b"payload 3")]
        await store.close()

    run(body)


def test_boot_counter_increases_across_restarts(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        first = await store.boot()
        second = await store.boot()
        store = await reopen(backend, store)
        third = await store.boot()
        assert first < second < third
        await store.close()

    run(body)


def test_concurrent_group_commits(backend: Backend) -> None:
    """Many submitters at once: every add resolves, batches form, nothing is lost."""

    async def body() -> None:
        store = await opened(backend)
        committer = GroupCommitter(store)
        jobs = [job(n, data=os.urandom(64)) for n in range(600)]

        async def submit(stored: StoredJob) -> None:
            await committer.add(stored)
            if int(stored.handle.rsplit(b":", 1)[1]) % 3 == 0:
                committer.remove(stored.handle)

        await asyncio.gather(*(submit(j) for j in jobs))
        committer.set_retries(jobs[1].handle, 2)
        await committer.close()
        assert committer.commits < len(jobs) // 2, "adds were not grouped"
        store = await reopen(backend, store)
        loaded = await store.load()
        expected = [j for n, j in enumerate(jobs) if n % 3]
        assert [j.handle for j in loaded] == [j.handle for j in expected]
        assert [j.data for j in loaded] == [j.data for j in expected]
        assert loaded[0].retries == 2
        await store.close()

    run(body)


def test_big_batches_of_adds_and_removes(backend: Backend) -> None:
    """Thousands of adds and removes in one batch (stores split them into statements)."""

    async def body() -> None:
        store = await opened(backend)
        jobs = [job(n) for n in range(2600)]
        await store.apply(Batch(adds=jobs))
        gone = [j.handle for n, j in enumerate(jobs) if n % 5]
        await store.apply(Batch(removes=gone))
        store = await reopen(backend, store)
        assert [j.handle for j in await store.load()] == [j.handle for j in jobs[::5]]
        await store.close()

    run(body)


def test_quiet_adds_are_told_once_per_batch_in_order(backend: Backend) -> None:
    """add_quiet: no future per job; on_added gets each batch's tokens, in add order,
    once its transaction committed (what the server acknowledges JOB_CREATED on)."""

    async def body() -> None:
        store = await opened(backend)
        told: list[tuple[list[int], StoreError | None]] = []
        committer = GroupCommitter(store, on_added=lambda t, e: told.append((list(t), e)))
        jobs = [job(n) for n in range(300)]
        for n, stored in enumerate(jobs):
            committer.add_quiet(stored, n)
            if n % 50 == 49:
                await asyncio.sleep(0)  # let a batch go while more arrive
        await committer.flush()
        assert [n for tokens, _ in told for n in tokens] == list(range(300))
        assert all(error is None for _, error in told)
        assert 1 < len(told) <= committer.commits
        await committer.close()
        store = await reopen(backend, store)
        assert [j.handle for j in await store.load()] == [j.handle for j in jobs]
        await store.close()

    run(body)


def test_quiet_adds_of_a_failed_batch_are_told_the_error(durable_backend: Backend) -> None:
    backend = durable_backend
    assert backend.down_url is not None

    async def body() -> None:
        store = open_store(backend.down_url, data_dir=backend.data_dir)
        told: list[tuple[list[int], StoreError | None]] = []
        committer = GroupCommitter(store, min_backoff=0.01, max_backoff=0.05,
                                   on_added=lambda t, e: told.append((list(t), e)))
        for n in range(5):
            committer.add_quiet(job(n), n)
        await committer.flush()
        assert [n for tokens, _ in told for n in tokens] == list(range(5))
        assert all(isinstance(error, StoreError) for _, error in told)
        await committer.close()
        committer.add_quiet(job(9), 9)  # after close: told at once, not queued
        assert told[-1][0] == [9]
        assert isinstance(told[-1][1], StoreError)
        await store.close()

    run(body)


def test_unreachable_store_fails_clearly(durable_backend: Backend) -> None:
    backend = durable_backend
    assert backend.down_url is not None

    async def body() -> None:
        store = open_store(backend.down_url, data_dir=backend.data_dir)
        with pytest.raises(StoreError) as opening:
            await store.open()
        with pytest.raises(StoreError) as writing:
            await store.apply(Batch(adds=[job(1)]))
        await store.close()
        for exc in (opening.value, writing.value):
            text = str(exc)
            assert store.description in text
            assert "unreachable" in text or "does not exist" in text

    run(body)


def test_committer_reports_store_down_to_each_submitter(durable_backend: Backend) -> None:
    backend = durable_backend
    assert backend.down_url is not None

    async def body() -> None:
        store = open_store(backend.down_url, data_dir=backend.data_dir)
        committer = GroupCommitter(store, min_backoff=0.01, max_backoff=0.05)
        futures = [committer.add(job(n)) for n in range(5)]
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(r, StoreError) for r in results), results
        assert committer.failures >= 1
        await committer.close()
        await store.close()

    run(body)


# ------------------------------------------------- outcomes, schedules, submitted, when

#: Every byte value, NULs and 0xff included.
EVERY_BYTE = bytes(range(256))
