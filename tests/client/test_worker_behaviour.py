"""Worker lifecycle against gearshift and gearmand: stop after N jobs, stop when idle,
graceful SIGTERM, CAN_DO_TIMEOUT requeue, re-registration after a server restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gearshift.client import AdminClient, Client, Job, Worker
from gearshift.testing import ServerProcess

from .conftest import SERVER_KINDS, running, start_server

Names = Callable[[str], str]
PEERS = Path(__file__).parent / "peers"


def queued(server: ServerProcess, function: str) -> int:
    with AdminClient(server.address) as admin:
        return next((s.total for s in admin.status() if s.function == function), 0)


def test_stop_after_n_jobs(server: ServerProcess, fname: Names) -> None:
    with Client([server.address], timeout=10) as client:
        for i in range(3):
            client.submit_background(fname(), b"%d" % i)
    worker = Worker([server.address])
    worker.register(fname(), lambda job: None)
    thread = threading.Thread(target=worker.run, kwargs={"max_jobs": 2})
    thread.start()
    thread.join(15)
    assert not thread.is_alive()
    assert worker.jobs_done == 2
    assert queued(server, fname()) == 1


def test_stop_when_idle(server: ServerProcess, fname: Names) -> None:
    with Client([server.address], timeout=10) as client:
        for i in range(4):
            client.submit_background(fname(), b"%d" % i)
    seen: list[bytes] = []
    worker = Worker([server.address], concurrency=2)
    worker.register(fname(), lambda job: seen.append(job.data))
    thread = threading.Thread(target=worker.run, kwargs={"stop_when_idle": True})
    thread.start()
    thread.join(15)
    assert not thread.is_alive()
    assert sorted(seen) == [b"0", b"1", b"2", b"3"]
    assert queued(server, fname()) == 0


def test_sigterm_finishes_running_job_then_exits(server: ServerProcess, fname: Names) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(PEERS / "sigterm_worker.py"), server.address, fname(), "1.0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with Client([server.address], timeout=15) as client:
            tasks = client.task_set()
            first = tasks.add(fname(), b"one")
            second = tasks.add(fname(), b"two")
            tasks.submit()  # both queued (JOB_CREATED), results not awaited yet
            assert proc.stdout.readline().strip() == "start one"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            client.run([first], timeout=10)
            assert first.result == b"finished one"
            assert not second.done  # never taken: still queued on the server
            assert queued(server, fname()) == 1
        assert proc.stdout.read().split() == ["stopped", "1"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_can_do_timeout_requeues_slow_attempt(server: ServerProcess, fname: Names) -> None:
    attempts: list[float] = []

    def slow_once(job: Job) -> bytes:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            time.sleep(1.6)  # past the 1 s CAN_DO_TIMEOUT: the server takes the job back
        return b"attempt %d" % len(attempts)

    worker = Worker([server.address], concurrency=2)
    worker.register(fname(), slow_once, can_do_timeout=1.0)
    with running(worker), Client([server.address], timeout=15) as client:
        assert client.submit(fname(), b"x") == b"attempt 2"
    assert len(attempts) == 2
    # Requeued by the server's 1 s timer. gearshift wakes the idle second connection at
    # once; gearmand 1.1 hands the job out again only when a connection next asks.
    assert attempts[1] - attempts[0] > 0.9


@pytest.fixture(params=SERVER_KINDS)
def own_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A server this test may kill and restart."""
    proc = start_server(request.param)
    try:
        yield proc
    finally:
        proc.__exit__(None, None, None)


def test_worker_reregisters_after_server_restart(own_server: ServerProcess) -> None:
    worker = Worker([own_server.address], client_id="phoenix")
    worker.register("restart_fn", lambda job: job.data + b"!")
    with running(worker):
        with Client([own_server.address], timeout=10) as client:
            assert client.submit("restart_fn", b"before") == b"before!"
        own_server.kill()
        time.sleep(0.3)
        own_server.start()  # same port, empty server: nobody has registered yet
        deadline = time.monotonic() + 15
        while worker.registrations(own_server.address) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.registrations(own_server.address) == 2
        with Client([own_server.address], timeout=10) as client:
            assert client.submit("restart_fn", b"after") == b"after!"
        with AdminClient(own_server.address) as admin:
            ids = [w.client_id for w in admin.workers() if "restart_fn" in w.functions]
        assert ids == ["phoenix"]
