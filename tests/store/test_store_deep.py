"""Deep queues (``--queue-memory``) on every store that pages: ``gearshift serve`` keeps a
small head in memory, the rest is read back from SQLite, PostgreSQL or MariaDB in order,
across a restart, with unique keys coalescing onto jobs that are only in the store."""

from __future__ import annotations

import json
import time

import pytest
from conftest import Backend
from gearlink import Link, P

from gearshift.protocol import encode_request
from gearshift.testing import GearshiftServer

PAGEABLE = {"sqlite", "postgresql", "mysql"}
JOBS = 1200


def memory(server: GearshiftServer) -> dict[str, int]:
    link = Link(server.host, server.port)
    try:
        link.sock.sendall(b"memory\n")
        reply = b""
        while not reply.endswith(b"\n"):
            reply += link.sock.recv(4096)
    finally:
        link.close()
    assert reply.startswith(b"OK "), reply
    data: dict[str, int] = json.loads(reply[3:])
    return data


def fill(server: GearshiftServer) -> list[bytes]:
    link = Link(server.host, server.port, timeout=60)
    handles = []
    try:
        for start in range(0, JOBS, 100):
            ptypes = [P.SUBMIT_JOB_HIGH_BG if n % 3 == 0 else P.SUBMIT_JOB_BG
                      for n in range(start, start + 100)]
            link.sock.sendall(b"".join(encode_request(t, b"deep", b"u%d" % n, b"d%d" % n)
                                       for t, n in zip(ptypes, range(start, start + 100),
                                                       strict=True)))
            for _ in range(100):
                kind, fields = link.read()
                assert kind == P.JOB_CREATED, (kind, fields)
                handles.append(fields[0])
    finally:
        link.close()
    return handles


@pytest.mark.storage
@pytest.mark.timeout(240)
def test_deep_queue_pages_back_in_order_across_a_restart(durable_backend: Backend) -> None:
    if durable_backend.name not in PAGEABLE:
        pytest.skip(f"{durable_backend.name} does not page (--queue-memory is ignored)")
    args = ["--queue-memory", "64KiB", "--keep-results", "0"]
    with GearshiftServer(store=durable_backend.url, extra_args=args,
                         startup_timeout=60) as server:
        handles = fill(server)
        assert memory(server)["spilled"] > JOBS // 2
        server.restart()
        mem = memory(server)
        assert mem["spilled"] > JOBS // 2, mem
        assert mem["spilled"] + mem["jobs_in_memory"] == JOBS
        link = Link(server.host, server.port)
        # Coalescing onto a job that is only in the store, after the restart.
        assert link.submit_bg(b"deep", b"u1100", b"again") == handles[1100]
        link.close()
        worker = Link(server.host, server.port, timeout=30)
        worker.send(P.CAN_DO, b"deep")
        got = []
        deadline = time.monotonic() + 120
        while len(got) < JOBS and time.monotonic() < deadline:
            job = worker.grab()
            if job is None:
                time.sleep(0.05)  # a page is being read
                continue
            got.append(job[3])
            worker.send(P.WORK_COMPLETE, job[0], b"")
        worker.close()
        high = [b"d%d" % n for n in range(JOBS) if n % 3 == 0]
        normal = [b"d%d" % n for n in range(JOBS) if n % 3]
        assert got == high + normal
        assert memory(server)["spilled"] == 0
