"""Time-driven behaviour over real sockets: epoch jobs released by the server's own timer,
CAN_DO_TIMEOUT requeueing an overrunning job, and ``-j`` dropping a job that keeps
losing its worker."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gearshift.protocol import ErrorCode
from gearshift.testing import GearshiftServer

from ._wire import P, Wire


@pytest.fixture(scope="module")
def server() -> Iterator[GearshiftServer]:
    with GearshiftServer() as srv:
        yield srv


def test_epoch_job_runs_at_its_time_without_other_traffic(server: GearshiftServer) -> None:
    worker, client = Wire.to(server.address), Wire.to(server.address)
    worker.send(P.CAN_DO, b"later")
    assert worker.call(P.GRAB_JOB) == (P.NO_JOB, [])
    worker.send(P.PRE_SLEEP)
    when = int(time.time()) + 2
    ptype, [handle] = client.call(P.SUBMIT_JOB_EPOCH, b"later", b"", str(when).encode(), b"d")
    assert ptype == P.JOB_CREATED
    # Nothing else happens on the server; only its timer can wake the worker.
    assert worker.recv(timeout=when - time.time() + 5) == (P.NOOP, [])
    woke = time.time()
    assert woke >= when - 0.05, f"woken {when - woke:.2f}s early"
    assert woke < when + 3
    assert worker.call(P.GRAB_JOB) == (P.JOB_ASSIGN, [handle, b"later", b"d"])
    worker.send(P.WORK_COMPLETE, handle, b"")
    assert client.call(P.GET_STATUS, handle) == (P.STATUS_RES, [handle, b"0", b"0", b"0", b"0"])


def test_can_do_timeout_requeues_an_overrunning_job(server: GearshiftServer) -> None:
    client, slow, spare = (Wire.to(server.address) for _ in range(3))
    slow.send(P.CAN_DO_TIMEOUT, b"slowfn", b"1000")
    _, [handle] = client.call(P.SUBMIT_JOB, b"slowfn", b"", b"x")
    assert slow.call(P.GRAB_JOB) == (P.JOB_ASSIGN, [handle, b"slowfn", b"x"])
    assigned = time.monotonic()
    spare.send(P.CAN_DO, b"slowfn")
    spare.send(P.PRE_SLEEP)
    assert spare.recv(timeout=6) == (P.NOOP, [])  # the timer put it back in the queue
    assert time.monotonic() - assigned >= 0.9
    assert spare.call(P.GRAB_JOB) == (P.JOB_ASSIGN, [handle, b"slowfn", b"x"])
    # The slow worker lost it: its late result is refused and reaches nobody.
    ptype, fields = slow.call(P.WORK_COMPLETE, handle, b"late")
    assert (ptype, fields[0]) == (P.ERROR, ErrorCode.JOB_NOT_FOUND)
    spare.send(P.WORK_COMPLETE, handle, b"on time")
    assert client.recv() == (P.WORK_COMPLETE, [handle, b"on time"])


def _grab_when_requeued(address: str, function: bytes, timeout: float = 5) -> Wire:
    """A new worker that holds the job, once the server has processed the previous
    worker's disconnect (a close is asynchronous, so poll -- bounded)."""
    deadline = time.monotonic() + timeout
    worker = Wire.to(address)
    worker.send(P.CAN_DO, function)
    while True:
        ptype, _ = worker.call(P.GRAB_JOB)
        if ptype == P.JOB_ASSIGN:
            return worker
        assert time.monotonic() < deadline, "job never came back to the queue"
        time.sleep(0.02)


def test_job_retries_drop_the_job_and_fail_the_client() -> None:
    with GearshiftServer(extra_args=["-j", "2"]) as server:
        client = Wire.to(server.address)
        _, [handle] = client.call(P.SUBMIT_JOB, b"crashy", b"", b"x")
        for _attempt in range(2):
            _grab_when_requeued(server.address, b"crashy").close()  # worker dies
        assert client.recv() == (P.WORK_FAIL, [handle])
        assert client.call(P.GET_STATUS, handle) == (
            P.STATUS_RES, [handle, b"0", b"0", b"0", b"0"])
        status = Wire.to(server.address).admin(b"status")
        assert b"crashy\t0\t0\t0\n" in status


@pytest.mark.parametrize(("wakeup", "expected"), [("1", 1), ("0", 3)])
def test_worker_wakeup_option_caps_noops_per_job(wakeup: str, expected: int) -> None:
    # --wakeup-timeout 0: the woken worker never grabs here, and the cap is what is tested
    with GearshiftServer(extra_args=["--worker-wakeup", wakeup, "--wakeup-timeout", "0"]) \
            as server:
        sleepers = [Wire.to(server.address) for _ in range(3)]
        for w in sleepers:
            w.send(P.CAN_DO, b"herd")
            w.send(P.PRE_SLEEP)
        for w in sleepers:  # every PRE_SLEEP has been processed once ECHO comes back
            assert w.call(P.ECHO_REQ, b"sync") == (P.ECHO_RES, [b"sync"])
        client = Wire.to(server.address)
        assert client.call(P.SUBMIT_JOB_BG, b"herd", b"", b"x")[0] == P.JOB_CREATED
        woken = [w for w in sleepers if not w.silent(0.5)]
        assert len(woken) == expected
        assert all(w.recv() == (P.NOOP, []) for w in woken)


def test_sleepers_are_woken_when_the_woken_worker_does_not_come() -> None:
    """-w 1: the one NOOPed worker never grabs (a hung worker, or a socket its dead
    process's parent still holds); after --wakeup-timeout the other sleepers are woken
    and one of them runs the job."""
    with GearshiftServer(extra_args=["--wakeup-timeout", "0.3"]) as server:
        sleepers = [Wire.to(server.address) for _ in range(3)]
        for w in sleepers:
            w.send(P.CAN_DO, b"stuck")
            w.send(P.PRE_SLEEP)
        for w in sleepers:
            assert w.call(P.ECHO_REQ, b"sync") == (P.ECHO_RES, [b"sync"])
        client = Wire.to(server.address)
        assert client.call(P.SUBMIT_JOB, b"stuck", b"", b"x")[0] == P.JOB_CREATED
        stale = next(w for w in sleepers if not w.silent(0.1))  # the first NOOP
        assert stale.recv() == (P.NOOP, [])
        live = [w for w in sleepers if w is not stale]
        assert all(w.recv() == (P.NOOP, []) for w in live)  # within REPLY_TIMEOUT
        handle = live[0].call(P.GRAB_JOB)[1][0]
        live[0].send(P.WORK_COMPLETE, handle, b"done")
        assert client.recv() == (P.WORK_COMPLETE, [handle, b"done"])
