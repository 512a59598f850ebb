"""The blocking client against gearshift and gearmand (same bodies, parametrised server)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from gearshift.client import (
    Client,
    ConnectionFailed,
    EventKind,
    GearmanTimeout,
    Job,
    JobException,
    JobFailed,
    Priority,
    ServerError,
    Task,
    Worker,
)
from gearshift.testing import ServerProcess, free_port

from .conftest import running

Names = Callable[[str], str]


def upper(job: Job) -> bytes:
    return job.data.upper()


def test_submit_waits_for_result(server: ServerProcess, fname: Names) -> None:
    worker = Worker([server.address])
    worker.register(fname("up"), upper)
    with running(worker), Client([server.address], timeout=10) as client:
        assert client.submit(fname("up"), b"hello") == b"HELLO"
        assert client.submit(fname("up"), "str é") == "STR é".encode()
        assert client.submit(fname("up")) == b""


def test_worker_exception_becomes_job_exception(server: ServerProcess, fname: Names) -> None:
    def boom(job: Job) -> bytes:
        raise ValueError("no " + job.data.decode())

    worker = Worker([server.address], exceptions=True)
    worker.register(fname("boom"), boom)
    worker.register(fname("up"), upper)
    with running(worker), Client([server.address], timeout=10) as client:
        with pytest.raises(JobException) as info:
            client.submit(fname("boom"), b"way")
        assert info.value.data == b"ValueError: no way"
        # the worker survived the exception and keeps working
        assert client.submit(fname("up"), b"again") == b"AGAIN"
    with running(worker), Client([server.address], timeout=10, exceptions=False) as client:
        with pytest.raises(JobFailed) as failed:
            client.submit(fname("boom"), b"x")
        assert not isinstance(failed.value, JobException)


def test_worker_without_exceptions_sends_fail(server: ServerProcess, fname: Names) -> None:
    def boom(job: Job) -> bytes:
        raise RuntimeError("hidden")

    worker = Worker([server.address], exceptions=False)  # always WORK_FAIL, as libgearman
    worker.register(fname(), boom)
    with running(worker), Client([server.address], timeout=10) as client:
        with pytest.raises(JobFailed) as info:
            client.submit(fname(), b"x")
        assert not isinstance(info.value, JobException)


def test_background_returns_handle_at_once(server: ServerProcess, fname: Names) -> None:
    seen: list[bytes] = []
    done = threading.Event()

    def record(job: Job) -> None:
        seen.append(job.data)
        done.set()

    with Client([server.address], timeout=10) as client:
        handle = client.submit_background(fname(), b"mail")  # no worker yet: still returns
        assert handle.startswith(b"H:")
        status = client.status(handle)
        assert status.known
        assert not status.running
        worker = Worker([server.address])
        worker.register(fname(), record)
        with running(worker):
            assert done.wait(10)
        assert seen == [b"mail"]
        assert not client.status(handle).known


def test_priorities_order_queued_jobs(server: ServerProcess, fname: Names) -> None:
    order: list[bytes] = []
    with Client([server.address], timeout=10) as client:
        for prio, name in [(Priority.LOW, b"low"), (Priority.NORMAL, b"normal"),
                           (Priority.HIGH, b"high")]:
            client.submit_background(fname(), name, priority=prio)
        worker = Worker([server.address])
        worker.register(fname(), lambda job: order.append(job.data))
        with running(worker, max_jobs=3):
            deadline = time.monotonic() + 10
            while len(order) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
    assert order == [b"high", b"normal", b"low"]


def test_unique_key_coalesces(server: ServerProcess, fname: Names) -> None:
    runs: list[bytes] = []
    gate = threading.Event()

    def slow(job: Job) -> bytes:
        runs.append(job.unique)
        gate.wait(10)
        return b"shared"

    worker = Worker([server.address])
    worker.register(fname(), slow)
    with running(worker), Client([server.address], timeout=10) as client:
        tasks = client.task_set()
        first = tasks.add(fname(), b"a", unique="same-key")
        second = tasks.add(fname(), b"b", unique="same-key")
        threading.Timer(0.3, gate.set).start()
        assert tasks.results() == [b"shared", b"shared"]
    assert first.handle == second.handle
    assert runs == [b"same-key"]


def test_task_set_callbacks_and_as_completed(server: ServerProcess, fname: Names) -> None:
    def echo_after(job: Job) -> bytes:
        time.sleep(float(job.data) / 1000)
        job.send_data(b"d" + job.data)
        return job.data

    events: list[tuple[bytes, EventKind]] = []
    finished: list[bytes] = []
    worker = Worker([server.address], concurrency=3)
    worker.register(fname(), echo_after)
    with running(worker), Client([server.address], timeout=10) as client:
        tasks = client.task_set()
        for delay in (b"300", b"10", b"150"):
            tasks.add(fname(), delay, on_event=lambda t, e: events.append((t.data, e.kind)),
                      on_done=lambda t: finished.append(t.outcome()))
        order = [task.result for task in tasks.as_completed()]
    assert order == [b"10", b"150", b"300"]
    assert finished == order
    assert sorted((d, k.value) for d, k in events) == sorted(
        [(d, k.value) for d in order for k in (EventKind.DATA, EventKind.COMPLETE)])


def test_streaming_data_warning_status(server: ServerProcess, fname: Names) -> None:
    def chatty(job: Job) -> bytes:
        job.send_status(1, 3)
        job.send_data(b"chunk1")
        job.send_warning(b"careful")
        job.send_status(2, 3)
        job.send_data(b"chunk2")
        return b"end"

    worker = Worker([server.address])
    worker.register(fname(), chatty)
    with running(worker), Client([server.address], timeout=10) as client:
        events = list(client.stream(fname(), b""))
    assert [(e.kind, e.data, e.numerator, e.denominator) for e in events] == [
        (EventKind.STATUS, b"", 1, 3), (EventKind.DATA, b"chunk1", 0, 0),
        (EventKind.WARNING, b"careful", 0, 0), (EventKind.STATUS, b"", 2, 3),
        (EventKind.DATA, b"chunk2", 0, 0), (EventKind.COMPLETE, b"end", 0, 0)]


def test_status_of_running_job_by_handle_and_unique(server: ServerProcess, fname: Names) -> None:
    started, release = threading.Event(), threading.Event()

    def progress(job: Job) -> bytes:
        job.send_status(3, 7)
        started.set()
        release.wait(10)
        return b""

    worker = Worker([server.address])
    worker.register(fname(), progress)
    with running(worker), Client([server.address], timeout=10) as client:
        handle = client.submit_background(fname(), b"", unique=fname("u"))
        assert started.wait(10)
        time.sleep(0.1)  # WORK_STATUS was sent before `started`; let the server apply it
        status = client.status(handle)
        assert (status.known, status.running, status.numerator, status.denominator) == (
            True, True, 3, 7)
        assert status.fraction == pytest.approx(3 / 7)
        by_unique = client.status_unique(fname("u"))
        assert (by_unique.known, by_unique.running, by_unique.numerator) == (True, True, 3)
        release.set()
        unknown = client.status(b"H:nowhere:1")
        assert not unknown.known
        assert not unknown.running


def test_timeout_then_connection_still_usable(server: ServerProcess, fname: Names) -> None:
    with Client([server.address]) as client:
        started = time.monotonic()
        with pytest.raises(GearmanTimeout):
            client.submit(fname("nobody"), b"x", timeout=0.3)
        assert 0.25 < time.monotonic() - started < 3
        assert isinstance(GearmanTimeout("x"), TimeoutError)
        worker = Worker([server.address])
        worker.register(fname("up"), upper)
        with running(worker):
            assert client.submit(fname("up"), b"later", timeout=10) == b"LATER"
        assert client.echo(b"ping", timeout=5) == b"ping"


def test_run_at_epoch(server: ServerProcess, fname: Names) -> None:
    ran: dict[bytes, float] = {}
    worker = Worker([server.address])
    worker.register(fname(), lambda job: ran.setdefault(job.data, time.time()))
    with Client([server.address], timeout=10) as client:
        when = time.time() + 1.5
        client.submit_background(fname(), b"later", when=when)
        with running(worker):
            time.sleep(0.5)
            assert b"later" not in ran  # not due yet, though a worker is idle
            if server.name == "gearmand":
                # gearmand <= 1.1 has no epoch timer (gearmand.md 2.6, issue #101): a due
                # job only runs when something else wakes a sleeping worker.
                time.sleep(max(0.0, when - time.time()) + 0.1)
                client.submit_background(fname(), b"nudge")
            deadline = time.monotonic() + 10
            while b"later" not in ran and time.monotonic() < deadline:
                time.sleep(0.05)
    assert b"later" in ran
    assert ran[b"later"] >= int(when)


def test_map_reduce_runs_the_reducer_over_the_partitions(server: ServerProcess,
                                                         fname: Names) -> None:
    def mapper(job: Job) -> bytes:
        words = job.data.split()
        for word in words[:-1]:
            job.send_data(word)  # a partition for the reducer
        return words[-1]  # the last partition

    def count_letters(job: Job) -> bytes:
        assert not job.reducer  # the reducer's own jobs are plain jobs
        return b"%d" % len(job.data)

    mapper_worker = Worker([server.address])
    mapper_worker.register(fname("map"), mapper,
                           aggregator=lambda results: b"+".join(results))
    reducer_worker = Worker([server.address], concurrency=2)
    reducer_worker.register(fname("red"), count_letters)
    with running(mapper_worker), running(reducer_worker), \
            Client([server.address], timeout=20) as client:
        assert client.submit_reduce(fname("map"), b"a bb ccc dddd", fname("red")) == \
            b"1+2+3+4"
    # without an aggregator the reducers' results are joined
    plain = Worker([server.address])
    plain.register(fname("map2"), mapper)
    with running(plain), running(reducer_worker), \
            Client([server.address], timeout=20) as client:
        assert client.submit_reduce(fname("map2"), b"x yy", fname("red")) == b"12"


def test_map_job_fails_when_a_reducer_fails(server: ServerProcess, fname: Names) -> None:
    def mapper(job: Job) -> bytes:
        job.send_data(b"good")
        return b"bad"

    def picky(job: Job) -> bytes:
        if job.data == b"bad":
            raise ValueError("cannot reduce this")
        return b"ok"

    mapper_worker = Worker([server.address])
    mapper_worker.register(fname("map"), mapper)
    reducer_worker = Worker([server.address])
    reducer_worker.register(fname("red"), picky)
    with running(mapper_worker), running(reducer_worker), \
            Client([server.address], timeout=20) as client, pytest.raises(JobFailed):
        client.submit_reduce(fname("map"), b"", fname("red"))
    assert mapper_worker.jobs_failed == 1


def test_json_call_and_task_decorator(server: ServerProcess, fname: Names) -> None:
    worker = Worker([server.address])

    @worker.task(fname("resize"))
    def resize(args: dict[str, int]) -> dict[str, int]:
        return {"w": args["w"] // 2, "h": args["h"] // 2}

    with running(worker), Client([server.address], timeout=10) as client:
        assert client.call(fname("resize"), {"w": 640, "h": 480}) == {"w": 320, "h": 240}


def test_server_error_for_oversized_unique(server: ServerProcess, fname: Names) -> None:
    with Client([server.address], timeout=10) as client:
        with pytest.raises(ServerError) as info:
            client.submit_background(fname(), b"", unique="u" * 65)
        assert info.value.code == b"ARGUMENT_TOO_LARGE"
        # the connection is still good after the ERROR
        assert client.echo(b"still", timeout=5) == b"still"


def test_no_server_reachable() -> None:
    with Client([f"127.0.0.1:{free_port()}"], connect_timeout=2) as client, \
            pytest.raises(ConnectionFailed):
        client.submit("f", b"x", timeout=5)


def test_task_errors_do_not_raise_from_wait(server: ServerProcess, fname: Names) -> None:
    def maybe(job: Job) -> bytes:
        if job.data == b"bad":
            raise KeyError("bad")
        return b"ok"

    worker = Worker([server.address], exceptions=True)
    worker.register(fname(), maybe)
    with running(worker), Client([server.address], timeout=10) as client:
        tasks = client.task_set()
        good, bad = tasks.add(fname(), b"good"), tasks.add(fname(), b"bad")
        done: list[Task] = tasks.wait()
    assert done == [good, bad]
    assert good.result == b"ok"
    assert good.error is None
    assert isinstance(bad.error, JobException)


def test_one_client_shared_by_threads(server: ServerProcess, fname: Names) -> None:
    worker = Worker([server.address], concurrency=4)
    worker.register(fname(), upper)
    results: dict[int, list[bytes]] = {}
    with running(worker), Client([server.address], timeout=20) as client:
        def submitter(n: int) -> None:
            results[n] = [client.submit(fname(), b"t%d-%d" % (n, i)) for i in range(15)]

        threads = [threading.Thread(target=submitter, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: [b"T%d-%d" % (n, i) for i in range(15)] for n in range(6)}


def test_msgpack_call(server: ServerProcess, fname: Names) -> None:
    pytest.importorskip("msgpack")
    worker = Worker([server.address])

    @worker.task(fname(), codec="msgpack")
    def stats(values: list[int]) -> dict[str, object]:
        return {"sum": sum(values), "raw": b"\x00\xff"}

    with running(worker), Client([server.address], timeout=10) as client:
        assert client.call(fname(), [1, 2, 3], codec="msgpack") == {"sum": 6, "raw": b"\x00\xff"}
