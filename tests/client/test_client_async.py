"""The asyncio client and worker against gearshift and gearmand: coroutine handlers,
concurrency through several connections, async iterators, cancelling a wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from gearshift.client import (
    AsyncAdminClient,
    AsyncClient,
    AsyncJob,
    AsyncWorker,
    EventKind,
    GearmanTimeout,
    JobException,
)
from gearshift.testing import ServerProcess

Names = Callable[[str], str]


@asynccontextmanager
async def working(worker: AsyncWorker) -> AsyncIterator[AsyncWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


def test_coroutine_handlers_run_concurrently(server: ServerProcess, fname: Names) -> None:
    async def main() -> None:
        active = 0
        peak = 0

        async def nap(job: AsyncJob) -> bytes:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await job.send_status(1, 2)
            await asyncio.sleep(0.3)
            active -= 1
            return job.data

        worker = AsyncWorker([server.address], concurrency=4)
        worker.register(fname(), nap)
        async with working(worker), AsyncClient([server.address], timeout=10) as client:
            started = time.monotonic()
            results = await asyncio.gather(*(client.submit(fname(), b"%d" % i)
                                             for i in range(8)))
            elapsed = time.monotonic() - started
        assert sorted(results) == [b"%d" % i for i in range(8)]
        assert peak == 4
        assert elapsed < 8 * 0.3  # 4 connections -> ~0.6 s, not 2.4 s serially

    asyncio.run(main())


def test_plain_function_and_exception(server: ServerProcess, fname: Names) -> None:
    async def main() -> None:
        worker = AsyncWorker([server.address], exceptions=True)
        worker.register(fname("plain"), lambda job: job.data[::-1])

        @worker.function(fname("bad"))
        async def bad(job: AsyncJob) -> bytes:
            raise LookupError("missing")

        async with working(worker), AsyncClient([server.address], timeout=10) as client:
            assert await client.submit(fname("plain"), b"abc") == b"cba"
            with pytest.raises(JobException) as info:
                await client.submit(fname("bad"))
            assert info.value.data == b"LookupError: missing"
            assert await client.submit(fname("plain"), b"xy") == b"yx"

    asyncio.run(main())


def test_stream_and_task_set_iterators(server: ServerProcess, fname: Names) -> None:
    async def main() -> None:
        async def chunks(job: AsyncJob) -> bytes:
            for part in job.data.split(b","):
                await job.send_data(part)
            await job.send_warning(b"w")
            return b"done"

        worker = AsyncWorker([server.address], concurrency=2)
        worker.register(fname(), chunks)
        async with working(worker), AsyncClient([server.address], timeout=10) as client:
            events = [(e.kind, e.data) async for e in client.stream(fname(), b"a,b,c")]
            assert events == [(EventKind.DATA, b"a"), (EventKind.DATA, b"b"),
                              (EventKind.DATA, b"c"), (EventKind.WARNING, b"w"),
                              (EventKind.COMPLETE, b"done")]
            tasks = client.task_set()
            for i in range(10):
                tasks.add(fname(), b"%d" % i)
            finished = [task async for task in tasks.as_completed()]
            assert sorted(t.data for t in finished) == sorted(t.data for t in tasks.tasks)
            assert all(t.result == b"done" for t in finished)

    asyncio.run(main())


def test_cancelled_wait_leaves_client_usable(server: ServerProcess, fname: Names) -> None:
    async def main() -> None:
        async with AsyncClient([server.address]) as client:
            waiter = asyncio.create_task(client.submit(fname("nobody"), b"x"))
            await asyncio.sleep(0.3)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            with pytest.raises(GearmanTimeout):
                await client.submit(fname("nobody"), b"y", timeout=0.2)
            worker = AsyncWorker([server.address])
            worker.register(fname("up"), lambda job: job.data.upper())
            async with working(worker):
                assert await client.submit(fname("up"), b"ok", timeout=10) == b"OK"
            assert await client.echo(b"e", timeout=5) == b"e"

    asyncio.run(main())


def test_async_admin_sees_worker(server: ServerProcess, fname: Names) -> None:
    async def main() -> None:
        worker = AsyncWorker([server.address], client_id=fname("id"))
        worker.register(fname(), lambda job: b"")
        async with working(worker), AsyncAdminClient(server.address) as admin:
            for _ in range(100):
                mine = [w for w in await admin.workers() if w.client_id == fname("id")]
                if mine:
                    break
                await asyncio.sleep(0.05)
            assert mine[0].functions == (fname(),)
            assert fname() in {s.function for s in await admin.status()}

    asyncio.run(main())
