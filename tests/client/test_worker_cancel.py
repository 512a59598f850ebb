"""``cancel job`` on a running job: the client is told "cancelled" and a gearshift worker
stops the work -- the handler is interrupted (or its on_cancel callback runs) and
nothing is reported; the worker then takes its next job."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gearshift.client import AdminClient, AsyncWorker, Client, Job, JobException, Worker
from gearshift.testing import GearshiftServer, ServerProcess, wait_until

from .conftest import running
from .test_client_async import working
from .test_worker_timeouts import napper

Names = Callable[[str], str]


@pytest.fixture(scope="module")
def gearshift() -> Iterator[ServerProcess]:
    with GearshiftServer() as proc:
        yield proc


def handles(server: ServerProcess) -> set[str]:
    with AdminClient(server.address, timeout=10) as admin:
        return {job.handle for job in admin.show_jobs()}


def cancel_when_running(server: ServerProcess, function: str, before: set[str]) -> float:
    """Cancel the one job of ``function`` (not in ``before``) once a worker runs it."""
    with AdminClient(server.address, timeout=10) as admin:
        wait_until(lambda: any(s.function == function and s.running
                               for s in admin.status()), "the job running")
        new = {job.handle for job in admin.show_jobs()} - before
        assert len(new) == 1
        admin.cancel_job(new.pop())
    return time.monotonic()


def test_cancelled_sync_handler_is_stopped(gearshift: ServerProcess, fname: Names) -> None:
    stopped = threading.Event()

    def release_on_cancel(job: Job) -> bytes:
        if job.data == b"long":
            job.on_cancel(stopped.set)  # the job's own way to end its wait
            stopped.wait(30)
            return b"too late"
        return b"next"

    worker = Worker([gearshift.address])
    worker.register(fname(), release_on_cancel)
    with running(worker), Client([gearshift.address], exceptions=True, timeout=20) as client:
        outcome: list[BaseException] = []

        def submit() -> None:
            try:
                client.submit(fname(), b"long")
            except JobException as exc:
                outcome.append(exc)
        before = handles(gearshift)
        thread = threading.Thread(target=submit)
        thread.start()
        cancelled_at = cancel_when_running(gearshift, fname(), before)
        thread.join(20)
        wait_until(stopped.is_set, "the handler stopped", 5)
        print(f"\ncancel: handler stopped {time.monotonic() - cancelled_at:.2f} s after")
        assert isinstance(outcome[0], JobException)
        assert outcome[0].data == b"cancelled"
        assert client.submit(fname(), b"short") == b"next"  # the worker goes on
    assert worker.jobs_failed == 1


def test_cancelled_coroutine_is_cancelled(gearshift: ServerProcess, fname: Names) -> None:
    cancelled = threading.Event()
    nap = napper(cancelled)

    async def main() -> None:
        worker = AsyncWorker([gearshift.address])
        worker.register(fname(), nap)
        async with working(worker):
            with Client([gearshift.address], exceptions=True, timeout=20) as client:
                before = handles(gearshift)
                job = client.submit_background(fname(), b"")
                await asyncio.to_thread(cancel_when_running, gearshift, fname(), before)
                await asyncio.to_thread(wait_until, cancelled.is_set, "cancelled", 5)
                outcome = client.result(job, wait=5)
        assert outcome.state == "cancelled"

    asyncio.run(main())
