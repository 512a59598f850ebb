"""Crash test: SIGKILL a durable gearshift server under background load, restart it, and
check that every job whose JOB_CREATED reached a client is run (none lost).

Duplicates are allowed only for jobs that were running at the crash: a job whose
WORK_COMPLETE had not been committed is replayed (at-least-once delivery).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from conftest import PG, _drop_sql, need_service
from gearlink import Link, P

from gearshift.testing import GearshiftServer

#: Bounds that keep the test short on a shared 2-core machine.
SUBMITTERS = 6
MAX_JOBS_PER_SUBMITTER = 2000
LOAD_SECONDS = 1.5
DRAIN_DEADLINE_S = 60.0


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/queue.db"
        return
    need_service("PostgreSQL", "127.0.0.1", 5432)
    table = "crash" + uuid.uuid4().hex[:10]
    url = f"{PG}?table={table}"
    try:
        yield url
    finally:
        _drop_sql("postgresql", url, table)


class Load:
    """Background submitters and one worker, all stopping when the server dies."""

    def __init__(self, server: GearshiftServer) -> None:
        self.server = server
        self.acked: dict[bytes, bytes] = {}   # unique/data -> handle, once JOB_CREATED came
        self.completed: set[bytes] = set()    # WORK_COMPLETE sent before the crash
        self.threads = [threading.Thread(target=self.submit, args=(k,), daemon=True)
                        for k in range(SUBMITTERS)]
        self.threads.append(threading.Thread(target=self.work, daemon=True))

    def submit(self, k: int) -> None:
        try:
            link = Link(self.server.host, self.server.port)
        except OSError:
            return
        try:
            for n in range(MAX_JOBS_PER_SUBMITTER):
                ident = f"{k}-{n}-\x01".encode() + bytes([0, 255])  # NULs in the payload
                # Every other job has no worker before the crash, so the replay has work.
                function = b"crash" if n % 2 else b"crash-queued"
                handle = link.submit_bg(function, ident[:-2], ident)
                self.acked[ident] = handle
        except (OSError, ConnectionError):
            return  # the server was killed
        finally:
            link.close()

    def work(self) -> None:
        try:
            link = Link(self.server.host, self.server.port)
        except OSError:
            return
        try:
            link.send(P.CAN_DO, b"crash")
            while True:
                got = link.grab()
                if got is None:
                    time.sleep(0.005)
                    continue
                link.send(P.WORK_COMPLETE, got[0], b"")
                self.completed.add(got[3])
        except (OSError, ConnectionError):
            return
        finally:
            link.close()


def drain(server: GearshiftServer,
          functions: tuple[bytes, ...] | list[bytes] = (b"crash", b"crash-queued")) -> list[bytes]:
    """Run every queued job of ``functions``; returns their payloads."""
    link = Link(server.host, server.port)
    for function in functions:
        link.send(P.CAN_DO, function)
    ran: list[bytes] = []
    idle_since = time.monotonic()
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    while time.monotonic() < deadline and time.monotonic() - idle_since < 1.0:
        got = link.grab()
        if got is None:
            time.sleep(0.01)
            continue
        link.send(P.WORK_COMPLETE, got[0], b"")
        ran.append(got[3])
        idle_since = time.monotonic()
    link.close()
    return ran


@pytest.mark.storage
@pytest.mark.timeout(180)
def test_sigkill_loses_no_acknowledged_background_job(crash_store: str) -> None:
    with GearshiftServer(store=crash_store) as server:
        load = Load(server)
        for thread in load.threads:
            thread.start()
        time.sleep(LOAD_SECONDS)
        server.kill()
        for thread in load.threads:
            thread.join(30)
        acked = dict(load.acked)
        assert len(acked) > 200, f"too little load before the crash: {len(acked)}"
        assert len(load.completed) > 20, "the worker did not run before the crash"

        server.start()
        ran = drain(server)
        after = set(ran)
        lost = set(acked) - load.completed - after
        duplicates = after & load.completed
        print(f"\n{crash_store.split(':')[0]}: {len(acked)} acknowledged, "
              f"{len(load.completed)} completed before the crash, {len(ran)} run after "
              f"restart, {len(duplicates)} duplicates")
        assert not lost, f"{len(lost)} acknowledged jobs lost, e.g. {sorted(lost)[:3]}"
        assert len(ran) == len(after), "a replayed job was handed out twice"
        # Only jobs running at the crash (WORK_COMPLETE sent, not yet committed) rerun;
        # the worker is sequential, so that is at most one group commit's worth.
        assert len(duplicates) <= 50, f"{len(duplicates)} completed jobs ran again"

        # Handles are never reused across restarts.
        link = Link(server.host, server.port)
        fresh = link.submit_bg(b"crash-after", b"", b"x")
        link.close()
        assert fresh not in set(acked.values())
