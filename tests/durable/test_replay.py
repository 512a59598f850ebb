"""Replay after SIGKILL: priorities, unique keys, functions, binary data, run-at times,
reducers, retry counts and handles come back exactly as they were submitted.

Every test kills the server with SIGKILL (no graceful flush) before restarting it, so
what comes back is what was committed before each JOB_CREATED, nothing more.
"""

from __future__ import annotations

import time

import pytest

from gearshift.testing import GearshiftServer

from ._link import Link, P, admin
from .conftest import Target

FUNC = b"replay"
MIB = bytes(range(256)) * 4096          # 1 MiB, every byte value, NULs included


def wait_for(predicate: object, what: str, timeout: float = 10.0) -> None:
    """Poll ``predicate()`` until true; fail with ``what`` after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def boot_of(handle: bytes) -> int:
    """The boot counter in a ``H:host:BOOT.N`` handle."""
    return int(handle.rsplit(b":", 1)[1].split(b".")[0])


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_replay_keeps_priority_order_data_and_run_at_times(any_target: Target) -> None:
    with GearshiftServer(store=any_target.url) as server:
        future = int(time.time()) + 4
        # (name, packet type, fields) in submission order.
        submissions: list[tuple[str, int, tuple[bytes, ...]]] = [
            ("L1", P.SUBMIT_JOB_LOW_BG, (FUNC, b"u-l1", b"l1")),
            ("N1", P.SUBMIT_JOB_BG, (FUNC, b"u-n1", b"n1\x00\xff\x00")),
            ("H1", P.SUBMIT_JOB_HIGH_BG, (FUNC, b"", b"h1")),
            ("E0", P.SUBMIT_JOB_EPOCH, (FUNC, b"u-e0", str(int(time.time()) - 60).encode(),
                                        b"e0")),
            ("EF", P.SUBMIT_JOB_EPOCH, (FUNC, b"u-ef", str(future).encode(), b"ef\x00")),
            ("R1", P.SUBMIT_REDUCE_JOB_BACKGROUND, (FUNC, b"u-r1", b"reducer-fn", b"",
                                                    b"r1\x00")),
            ("L2", P.SUBMIT_JOB_LOW_BG, (FUNC, b"u-l2", b"\x00")),
            ("N2", P.SUBMIT_JOB_BG, (FUNC, b"u-n2\x01\xfe", MIB)),
            ("H2", P.SUBMIT_JOB_HIGH_BG, (FUNC, b"u-h2", b"")),
            ("O1", P.SUBMIT_JOB_BG, (b"other-fn", b"u-o1", b"o1")),
        ]
        handles: dict[str, bytes] = {}
        with Link(server.host, server.port) as client:
            for name, ptype, fields in submissions:
                handles[name] = client.submit(ptype, *fields)
        # JOB_CREATED means committed: every job is in the store already.
        assert any_target.count(server) == len(submissions)

        server.kill()
        server.start()

        expected = ["H1", "H2", "N1", "E0", "R1", "N2", "L1", "L2"]
        by_name = {name: fields for name, _, fields in submissions}
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            for name in expected:
                got = worker.grab(P.GRAB_JOB_ALL)
                assert got is not None, f"{name} was not replayed"
                fields = by_name[name]
                if name == "R1":
                    assert got == [handles[name], FUNC, b"u-r1", b"reducer-fn", b"r1\x00"]
                elif name == "E0":
                    assert got == [handles[name], FUNC, b"u-e0", b"e0"]
                else:
                    assert got[0] == handles[name], f"{name} came back under another handle"
                    assert got[1:] == list(fields), f"{name} came back altered"
                worker.send(P.WORK_COMPLETE, got[0], b"")
            # The future epoch job is stored but not due: it must not run early.
            assert time.time() < future, "restart took too long to test the run-at time"
            assert worker.grab() is None, "the future epoch job ran before its time"
            while (got := worker.grab()) is None:
                assert time.time() < future + 5, "the epoch job never ran after its time"
                time.sleep(0.05)
            ran_at = time.time()
            assert got == [handles["EF"], FUNC, b"u-ef", b"ef\x00"]
            assert ran_at >= future, f"epoch job ran {future - ran_at:.2f}s early"
            worker.send(P.WORK_COMPLETE, got[0], b"")

            worker.send(P.CAN_DO, b"other-fn")
            got = worker.grab()
            assert got == [handles["O1"], b"other-fn", b"u-o1", b"o1"]
            worker.send(P.WORK_COMPLETE, got[0], b"")
            assert worker.grab() is None
        wait_for(lambda: any_target.count(server) == 0, "completed jobs to be removed")


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_unique_coalesces_onto_replayed_job(sqlite_target: Target) -> None:
    with GearshiftServer(store=sqlite_target.url) as server:
        with Link(server.host, server.port) as client:
            handle = client.submit(P.SUBMIT_JOB_BG, FUNC, b"same-key", b"payload-1")
        server.kill()
        server.start()

        with Link(server.host, server.port) as bg, Link(server.host, server.port) as fg:
            # After the restart the same unique key finds the replayed job.
            assert bg.submit(P.SUBMIT_JOB_BG, FUNC, b"same-key", b"payload-2") == handle
            assert fg.submit(P.SUBMIT_JOB, FUNC, b"same-key", b"payload-3") == handle
            assert sqlite_target.count(server) == 1, "a coalesced submission was stored"
            with Link(server.host, server.port) as worker:
                worker.send(P.CAN_DO, FUNC)
                got = worker.grab()
                assert got == [handle, FUNC, b"same-key", b"payload-1"]
                worker.send(P.WORK_COMPLETE, handle, b"result")
                # The foreground client attached after the restart hears the result.
                assert fg.read() == (P.WORK_COMPLETE, [handle, b"result"])
                assert worker.grab() is None, "a coalesced job ran twice"
            # A new job with the key gets a new handle from the new boot.
            fresh = bg.submit(P.SUBMIT_JOB_BG, FUNC, b"same-key", b"payload-4")
        assert fresh != handle
        assert boot_of(fresh) > boot_of(handle)


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_retry_count_survives_restart(sqlite_target: Target) -> None:
    """With -j 3 a job is dropped on its third lost attempt, counting attempts before
    the crash: two before SIGKILL, one after."""
    with GearshiftServer(store=sqlite_target.url, extra_args=["--job-retries", "3"]) as server:
        client = Link(server.host, server.port)
        handle = client.submit(P.SUBMIT_JOB_BG, FUNC, b"flaky", b"data")

        def status() -> list[bytes]:
            kind, fields = client.request(P.GET_STATUS, handle)
            assert kind == P.STATUS_RES
            return fields[1:3]                      # known, running

        def lose_one_attempt() -> None:
            with Link(server.host, server.port) as worker:
                worker.send(P.CAN_DO, FUNC)
                got = worker.grab()
                assert got is not None
                assert got[0] == handle
                assert status() == [b"1", b"1"]
            # The worker vanished; wait until the server has noticed.
            wait_for(lambda: status() != [b"1", b"1"], "the lost worker to be noticed")

        lose_one_attempt()
        lose_one_attempt()
        assert status() == [b"1", b"0"], "the job was dropped before the retry limit"
        # A later acknowledged submission proves the retry count is committed too.
        client.submit(P.SUBMIT_JOB_BG, b"marker", b"", b"")
        client.close()
        server.kill()
        server.start()

        shown = {line.split("\t")[0]: line.split("\t")[1]
                 for line in admin(server.host, server.port, "show jobs")}
        assert shown.get(handle.decode()) == "2", f"retry count not replayed: {shown}"
        client = Link(server.host, server.port)
        lose_one_attempt()
        assert status() == [b"0", b"0"], "the job survived its third lost attempt"
        client.submit(P.SUBMIT_JOB_BG, b"marker", b"", b"")   # commits the removal
        client.close()
        assert sqlite_target.count(server) == 2              # the two markers only
        server.kill()
        server.start()
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert worker.grab() is None, "the dropped job was replayed"


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_terminal_outcomes_remove_stored_jobs(any_target: Target) -> None:
    """WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION and admin cancel each delete the row."""
    with GearshiftServer(store=any_target.url) as server:
        with Link(server.host, server.port) as client:
            done = {kind: client.submit(P.SUBMIT_JOB_BG, FUNC, kind, kind)
                    for kind in (b"complete", b"fail", b"exception")}
            cancelled = client.submit(P.SUBMIT_JOB_BG, b"never-run", b"c", b"c")
            kept = client.submit(P.SUBMIT_JOB_LOW_BG, b"never-run", b"k", b"k")
            assert any_target.count(server) == 5
            assert admin(server.host, server.port, f"cancel job {cancelled.decode()}") == ["OK"]
            with Link(server.host, server.port) as worker:
                worker.send(P.CAN_DO, FUNC)
                for _ in range(3):
                    got = worker.grab()
                    assert got is not None
                    if got[3] == b"complete":
                        worker.send(P.WORK_COMPLETE, got[0], b"")
                    elif got[3] == b"fail":
                        worker.send(P.WORK_FAIL, got[0])
                    else:
                        worker.send(P.WORK_EXCEPTION, got[0], b"boom")
                assert worker.request(P.ECHO_REQ, b"x") == (P.ECHO_RES, [b"x"])
            # An acknowledged submission after the outcomes proves their removes committed.
            client.submit(P.SUBMIT_JOB_BG, b"marker", b"", b"")
        assert any_target.count(server) == 2                 # `kept` and the marker
        server.kill()
        server.start()
        shown = [line.split("\t")[0] for line in admin(server.host, server.port, "show jobs")]
        assert kept.decode() in shown
        for handle in [*done.values(), cancelled]:
            assert handle.decode() not in shown, f"{handle!r} was replayed after it ended"
