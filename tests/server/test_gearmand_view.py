"""Third-party clients and workers see gearmand, whatever gearshift now keeps.

A failed background job is kept as an outcome (and, under ``--retry``, run again), but a
peer that never sent OPTION_REQ "gearshift" must see exactly the packets gearmand sends:
JOB_CREATED to the submitter, the assignment to the worker, and after WORK_FAIL or
WORK_EXCEPTION nothing at all -- no retry, no NOOP, no extra reply. The transcript is
compared with a literal and, when gearmand is installed, with gearmand's own.
"""

from __future__ import annotations

import pytest

from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, gearmand_path

from ._wire import P, Wire

#: How long "nothing more arrives" is watched for, per peer and step.
QUIET_S = 0.2

Seen = list[tuple[str, int, list[bytes]]]


def transcript(server: ServerProcess) -> Seen:
    """Everything the submitter and the worker receive while two background jobs fail
    (one with WORK_FAIL, one with WORK_EXCEPTION); handles written as ``H``."""
    client, worker = Wire.to(server.address), Wire.to(server.address)
    seen: Seen = []
    handles: list[bytes] = []

    def note(who: str, wire: Wire, packet: tuple[int, list[bytes]]) -> None:
        ptype, fields = packet
        seen.append((who, int(ptype), [b"H" if f in handles else f for f in fields]))

    def drain(who: str, wire: Wire) -> None:
        while not wire.silent(QUIET_S):
            note(who, wire, wire.recv())

    try:
        worker.send(P.CAN_DO, b"bgfail")
        for unique, failure in ((b"u1", P.WORK_FAIL), (b"u2", P.WORK_EXCEPTION)):
            created = client.call(P.SUBMIT_JOB_BG, b"bgfail", unique, b"payload")
            handles.append(created[1][0])
            note("client", client, created)
            drain("worker", worker)  # the NOOP a sleeping worker is owed, nothing else
            note("worker", worker, worker.call(P.GRAB_JOB_UNIQ))
            fields = [handles[-1]] + ([b"why"] if failure == P.WORK_EXCEPTION else [])
            worker.send(failure, *fields)
            drain("worker", worker)
            drain("client", client)
            # The failed job is gone for good: not handed out again, no wake-up either
            # (the next submission's NOOP is the first thing the sleeper may get).
            note("worker", worker, worker.call(P.GRAB_JOB))
            worker.send(P.PRE_SLEEP)
            drain("worker", worker)
    finally:
        client.close()
        worker.close()
    return seen


EXPECTED: Seen = [
    ("client", P.JOB_CREATED, [b"H"]),
    ("worker", P.JOB_ASSIGN_UNIQ, [b"H", b"bgfail", b"u1", b"payload"]),
    ("worker", P.NO_JOB, []),
    ("client", P.JOB_CREATED, [b"H"]),
    ("worker", P.NOOP, []),
    ("worker", P.JOB_ASSIGN_UNIQ, [b"H", b"bgfail", b"u2", b"payload"]),
    ("worker", P.NO_JOB, []),
]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_failed_background_job_sends_nothing_new(store: str) -> None:
    """Default flags, memory or durable store: the packets are gearmand's, nothing more
    (the outcome is still kept, visible only through the admin protocol)."""
    with GearshiftServer(store=store) as server:
        assert transcript(server) == EXPECTED
        kept = Wire.to(server.address).admin(b"dead")
        assert kept.count(b'"state":"failed"') == 1
        assert kept.count(b'"state":"exception"') == 1


@pytest.mark.gearmand
@pytest.mark.skipif(gearmand_path() is None,
                    reason="needs gearmand: apt-get install gearman-job-server")
def test_gearmand_sends_the_same() -> None:
    """The literal above is what gearmand really sends (so it is not wishful)."""
    with GearmandServer() as server:
        assert transcript(server) == EXPECTED
