"""Two servers, one killed mid-run: submissions continue on the other, and the worker
reconnects and re-registers when the killed server comes back on the same port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from gearshift.client import Client, ConnectionFailed, ConnectionLost, Job, Worker
from gearshift.testing import ServerProcess

from .conftest import SERVER_KINDS, running, start_server


@pytest.fixture(params=SERVER_KINDS)
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    first = start_server(request.param)
    try:
        second = start_server(request.param)
        try:
            yield first, second
        finally:
            second.__exit__(None, None, None)
    finally:
        first.__exit__(None, None, None)


def test_kill_one_server_mid_run(pair: tuple[ServerProcess, ServerProcess]) -> None:
    doomed, survivor = pair
    served_by: dict[bytes, list[bytes]] = {}

    def tag(job: Job) -> bytes:
        served_by.setdefault(job.data, []).append(job.handle)
        return job.data

    worker = Worker([doomed.address, survivor.address])
    worker.register("fo", tag)
    outcomes: list[str] = []
    killed = threading.Event()
    with running(worker), Client([doomed.address, survivor.address], timeout=10) as client:
        def submit_loop() -> None:
            for i in range(60):
                if i == 20:
                    killed.wait(10)
                try:
                    unique = f"key{i}" if i % 2 else None  # hashed and round-robin jobs
                    result = client.submit("fo", b"%d" % i, unique=unique)
                    outcomes.append("ok" if result == b"%d" % i else "wrong")
                except ConnectionLost:
                    outcomes.append("lost")  # was running on the killed server

        submitter = threading.Thread(target=submit_loop)
        submitter.start()
        while len(outcomes) < 20:
            time.sleep(0.01)
        doomed.kill()
        killed.set()
        submitter.join(60)
        assert not submitter.is_alive()
        assert outcomes[:20] == ["ok"] * 20
        after = outcomes[20:]
        assert after.count("lost") <= 1  # at most the one job in flight at the kill
        assert after.count("ok") >= 39
        assert "wrong" not in outcomes

        # the dead server comes back on its port; the worker must find it by itself
        doomed.start()
        deadline = time.monotonic() + 15
        while worker.registrations(doomed.address) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.registrations(doomed.address) == 2
        with Client([doomed.address], timeout=10) as only_restarted:
            assert only_restarted.submit("fo", b"back") == b"back"


def test_unreachable_first_server_fails_over(pair: tuple[ServerProcess, ServerProcess]) -> None:
    down, up = pair
    down.kill()
    worker = Worker([up.address])
    worker.register("fo2", lambda job: job.data)
    with running(worker), Client([down.address, up.address], timeout=10) as client:
        started = time.monotonic()
        results = [client.submit("fo2", b"%d" % i, unique=f"u{i}") for i in range(10)]
        assert results == [b"%d" % i for i in range(10)]
        assert time.monotonic() - started < 5  # backoff: the dead server is not retried each time


def test_status_skips_a_dead_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    down, up = pair
    with Client([up.address], timeout=10) as only_up:
        handle = only_up.submit_background("fo3", b"", unique="status-key")
    down.kill()
    with Client([down.address, up.address], timeout=10, connect_timeout=2) as client:
        assert client.status(handle).known
        assert client.status_unique("status-key").known
    up.kill()
    with Client([down.address, up.address], timeout=10, connect_timeout=2) as client, \
            pytest.raises(ConnectionFailed):
        client.status(handle)
