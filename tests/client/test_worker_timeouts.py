"""A function's ``timeout`` is enforced by the worker: the job function is stopped and
the job fails with "timeout after S s"; the worker then takes the next job. The server's
CAN_DO_TIMEOUT is only a backstop, later (it would requeue the job behind our back)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from gearshift.client import AsyncClient, AsyncWorker, Client, Job, JobException, Worker
from gearshift.client._cancel import Cancellation, JobCancelled
from gearshift.testing import ServerProcess

from .conftest import running
from .test_client_async import working

Names = Callable[[str], str]


def test_python_handler_is_interrupted_at_its_timeout(server: ServerProcess,
                                                      fname: Names) -> None:
    def spin(job: Job) -> bytes:
        if job.data == b"forever":
            while True:  # Python code: interrupted at the deadline
                pass
        return b"quick"

    worker = Worker([server.address], exceptions=True)
    worker.register(fname(), spin, timeout=0.5)
    with running(worker), Client([server.address], timeout=20) as client:
        started = time.monotonic()
        with pytest.raises(JobException) as info:
            client.submit(fname(), b"forever")
        assert 0.5 <= time.monotonic() - started < 5
        assert client.submit(fname(), b"next") == b"quick"
    # gearmand turns WORK_EXCEPTION into WORK_FAIL + data for exception-aware clients too
    assert info.value.data == b"timeout after 0.5 s"
    assert worker.jobs_failed == 1


def napper(cancelled: threading.Event) -> Callable[[object], Awaitable[bytes]]:
    """A coroutine job function that sleeps 30 s and sets ``cancelled`` if stopped."""
    async def nap(job: object) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b"never"
    return nap


def test_coroutine_is_cancelled_at_its_timeout(server: ServerProcess, fname: Names) -> None:
    cancelled = threading.Event()
    nap = napper(cancelled)

    async def main() -> None:
        worker = AsyncWorker([server.address], exceptions=True)
        worker.register(fname(), nap, timeout=0.3)
        async with working(worker), AsyncClient([server.address], timeout=20) as client:
            with pytest.raises(JobException) as info:
                await client.submit(fname(), b"")
        assert info.value.data == b"timeout after 0.3 s"

    asyncio.run(main())
    assert cancelled.is_set()


def test_on_cancel_callback_replaces_the_interrupt(server: ServerProcess,
                                                   fname: Names) -> None:
    release = threading.Event()

    def waits(job: Job) -> bytes:
        job.on_cancel(release.set)  # the job knows how to end its own wait
        release.wait(30)
        return b"late"

    worker = Worker([server.address], exceptions=True)
    worker.register(fname(), waits, timeout=0.3)
    with running(worker), Client([server.address], timeout=20) as client, \
            pytest.raises(JobException) as info:
        client.submit(fname(), b"")
    assert info.value.data == b"timeout after 0.3 s"  # its late result is not sent


def test_cancellation_fires_once_and_never_after_finish() -> None:
    calls: list[str] = []
    control = Cancellation()
    control.add(lambda: calls.append("first"))
    assert control.cancel("timeout after 1 s")
    assert not control.cancel("worker stopped")
    assert control.reason == "timeout after 1 s"
    finished = Cancellation()
    finished.add(lambda: calls.append("late"))
    finished.finish()
    assert not finished.cancel("timeout after 1 s")
    assert calls == ["first"]


def test_a_broken_callback_does_not_stop_the_others() -> None:
    calls: list[str] = []
    control = Cancellation()
    control.add(lambda: 1 / 0)
    control.add(lambda: calls.append("second"))
    control.cancel("cancelled")
    assert calls == ["second"]


def test_job_cancelled_is_not_an_exception() -> None:
    # so that `except Exception` in job code does not swallow the stop
    assert not issubclass(JobCancelled, Exception)
    assert JobCancelled("timeout after 2 s").reason == "timeout after 2 s"
