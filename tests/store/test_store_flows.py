"""The storage conformance suite, part three: admin flow settings (``pause``, ``limit``)
on every backend: one text per function name (any bytes), upserted in place, deleted,
loaded in first-stored order, and written in the same batch as jobs without disturbing
them."""

from __future__ import annotations

from conftest import Backend
from test_store_conformance import job, opened, reopen, run, same

from gearshift.store import Batch, GroupCommitter


def test_flow_settings_round_trip_upsert_delete_and_order(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        assert await store.load_flows() == {}
        odd = b"f\x00\xff \n:name"
        await store.apply(Batch(flows={odd: "concurrency=2 rate=5/s",
                                       b"b": "paused", b"c": "weight=3"}))
        store = await reopen(backend, store)
        assert list((await store.load_flows()).items()) == [
            (odd, "concurrency=2 rate=5/s"), (b"b", "paused"), (b"c", "weight=3")]
        # An update keeps its place; a delete removes only that one (an unknown is fine).
        await store.apply(Batch(flows={odd: "concurrency=none paused", b"b": None,
                                       b"never-stored": None}))
        await store.apply(Batch(flows={b"d": "rate=10/h"}))
        store = await reopen(backend, store)
        assert list((await store.load_flows()).items()) == [
            (odd, "concurrency=none paused"), (b"c", "weight=3"), (b"d", "rate=10/h")]
        await store.close()

    run(body)


def test_flow_settings_share_a_batch_with_jobs(backend: Backend) -> None:
    async def body() -> None:
        store = await opened(backend)
        committer = GroupCommitter(store)
        jobs = [job(1), job(2)]
        first = committer.add(jobs[0])
        committer.put_flow(b"f", "paused")
        second = committer.add(jobs[1])
        committer.put_flow(b"g", "concurrency=1")
        committer.put_flow(b"g", None)  # last one wins
        await first
        await second
        await committer.close()
        store = await reopen(backend, store)
        same(await store.load(), jobs)
        assert await store.load_flows() == {b"f": "paused"}
        await store.close()

    run(body)
