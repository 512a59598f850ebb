"""The server with a slow, failing or unreachable store (issue 4, "Failure of the store").

* a write held up by a database lock delays only that JOB_CREATED; foreground jobs flow;
* a store that goes down answers ``ERROR QUEUE_ERROR``, the server stays up and recovers;
* a server whose store is unreachable at startup exits with a clear message.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from conftest import PG, Memcached, _drop_sql, need_service
from gearlink import Link, P

from gearshift.testing import GearshiftServer, free_port

#: How long the test keeps the store's table locked.
HOLD_S = 1.5


def echo_worker(server: GearshiftServer, stop: threading.Event) -> threading.Thread:
    """A worker answering ``echo`` jobs with their data, until ``stop``."""

    def run() -> None:
        link = Link(server.host, server.port)
        link.send(P.CAN_DO, b"echo")
        try:
            while not stop.is_set():
                job = link.grab()
                if job is None:
                    time.sleep(0.005)
                    continue
                link.send(P.WORK_COMPLETE, job[0], job[3])
        except OSError:
            pass
        finally:
            link.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def foreground_round_trips(server: GearshiftServer, seconds: float) -> int:
    """Run foreground ``echo`` jobs for ``seconds``; returns how many completed."""
    link = Link(server.host, server.port)
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kind, _ = link.request(P.SUBMIT_JOB, b"echo", b"", b"ping")
        assert kind == P.JOB_CREATED
        kind, fields = link.read()
        assert (kind, fields[1]) == (P.WORK_COMPLETE, b"ping")
        done += 1
    link.close()
    return done


class Locked:
    """Holds the store table's write lock from another connection for a while."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind, self.target = kind, target
        self.taken = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        if self.kind == "sqlite":
            db = sqlite3.connect(self.target, isolation_level=None)
            db.execute("BEGIN IMMEDIATE")
            self.taken.set()
            time.sleep(HOLD_S)
            db.execute("ROLLBACK")
            db.close()
        else:
            asyncio.run(self._pg())

    async def _pg(self) -> None:
        conn = await asyncpg.connect(PG)
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {self.target} IN ACCESS EXCLUSIVE MODE")
            self.taken.set()
            await asyncio.sleep(HOLD_S)
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def lockable(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[tuple[str, str, str]]:
    """(store url, kind, what to lock)."""
    if request.param == "sqlite":
        path = f"{tmp_path}/queue.db"
        yield f"sqlite://{path}", "sqlite", path
        return
    need_service("PostgreSQL", "127.0.0.1", 5432)
    table = "slow" + uuid.uuid4().hex[:10]
    try:
        yield f"{PG}?table={table}", "postgresql", table
    finally:
        _drop_sql("postgresql", "", table)


@pytest.mark.storage
@pytest.mark.timeout(120)
def test_slow_store_delays_only_its_acknowledgement(lockable: tuple[str, str, str]) -> None:
    url, kind, target = lockable
    stop = threading.Event()
    with GearshiftServer(store=url) as server:
        worker = echo_worker(server, stop)
        lock = Locked(kind, target)
        lock.thread.start()
        assert lock.taken.wait(10)
        submitter = Link(server.host, server.port)
        started = time.monotonic()
        submitter.send(P.SUBMIT_JOB_BG, b"durable", b"", b"x")
        # While the background write waits for the lock, foreground jobs keep flowing.
        flowed = foreground_round_trips(server, HOLD_S / 2)
        kind_, _ = submitter.read()
        waited = time.monotonic() - started
        lock.thread.join(10)
        stop.set()
        worker.join(10)
        submitter.close()
    assert flowed >= 20, f"only {flowed} foreground jobs ran while the store was locked"
    assert kind_ == P.JOB_CREATED
    assert waited >= HOLD_S * 0.8, f"JOB_CREATED came after {waited:.2f}s, before the commit"


@pytest.mark.storage
@pytest.mark.timeout(120)
def test_store_down_answers_queue_error_then_recovers(private_memcached: Memcached) -> None:
    stop = threading.Event()
    with GearshiftServer(store=private_memcached.url) as server:
        worker = echo_worker(server, stop)
        link = Link(server.host, server.port)
        assert link.submit_bg(b"durable", b"a", b"1")
        private_memcached.stop()
        kind, fields = link.request(P.SUBMIT_JOB_BG, b"durable", b"b", b"2")
        assert kind == P.ERROR
        assert fields[0] == b"QUEUE_ERROR"
        assert b"memcached at 127.0.0.1" in fields[1]
        assert foreground_round_trips(server, 0.3) > 0, "server stopped serving"
        private_memcached.start()
        deadline = time.monotonic() + 15
        while True:  # the committer retries with backoff (at most 2 s apart)
            kind, fields = link.request(P.SUBMIT_JOB_BG, b"durable", b"c", b"3")
            if kind == P.JOB_CREATED or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert kind == P.JOB_CREATED, f"store did not recover: {fields!r}"
        link.close()
        stop.set()
        worker.join(10)


@pytest.mark.storage
def test_unreachable_store_at_startup_fails_clearly() -> None:
    dead = free_port()
    server = GearshiftServer(store=f"postgresql://postgres@127.0.0.1:{dead}/test",
                             startup_timeout=30)
    try:
        with pytest.raises(RuntimeError) as failed:
            server.start()
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
    assert f"PostgreSQL at 127.0.0.1:{dead}" in str(failed.value)
    assert "unreachable" in str(failed.value)
