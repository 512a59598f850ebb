"""``gearshift serve`` on every durable backend: what a restart must preserve.

Priority order, binary payloads, unique-key coalescing across the restart, and fresh
handles for new jobs, checked over the wire against a real server process.
"""

from __future__ import annotations

import time

import pytest
from conftest import Backend
from gearlink import Link, P

from gearshift.testing import GearshiftServer

BINARY = b"\x00nul\x00\xff\x01" * 100


def grab_all(link: Link, deadline_s: float = 20.0) -> list[tuple[bytes, bytes, bytes, bytes]]:
    got: list[tuple[bytes, bytes, bytes, bytes]] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        job = link.grab()
        if job is None:
            break
        got.append(job)
        link.send(P.WORK_COMPLETE, job[0], b"")
    return got


@pytest.mark.storage
@pytest.mark.timeout(120)
def test_restart_replays_priorities_data_and_uniques(durable_backend: Backend) -> None:
    with GearshiftServer(store=durable_backend.url) as server:
        link = Link(server.host, server.port)
        low = link.submit_bg(b"work", b"u-low", b"low", P.SUBMIT_JOB_LOW_BG)
        normal = link.submit_bg(b"work", b"u-normal", BINARY)
        high = link.submit_bg(b"work", b"u-high", b"high", P.SUBMIT_JOB_HIGH_BG)
        kind, fields = link.request(P.SUBMIT_JOB_EPOCH, b"later", b"u-epoch", b"4102444800",
                                    b"epoch")
        assert kind == P.JOB_CREATED
        link.close()

        server.restart()

        link = Link(server.host, server.port)
        # Coalescing across the restart: the same unique key names the stored job.
        assert link.submit_bg(b"work", b"u-normal", b"other data") == normal
        fresh = link.submit_bg(b"work", b"u-new", b"new")
        assert fresh not in {low, normal, high, fields[0]}
        worker = Link(server.host, server.port)
        worker.send(P.CAN_DO, b"work")
        ran = grab_all(worker)
        assert [(h, u, d) for h, _, u, d in ran] == [
            (high, b"u-high", b"high"), (normal, b"u-normal", BINARY),
            (fresh, b"u-new", b"new"), (low, b"u-low", b"low")]
        worker.close()
        link.close()

        # Completed jobs are gone from the store; the epoch job is still waiting.
        server.restart()
        worker = Link(server.host, server.port)
        worker.send(P.CAN_DO, b"work")
        assert grab_all(worker, 2.0) == []
        worker.close()
        status = Link(server.host, server.port)
        kind, known = status.request(P.GET_STATUS, fields[0])
        assert (kind, known[1]) == (P.STATUS_RES, b"1"), "the epoch job was not replayed"
        status.close()
