"""Outcomes, retries, dead letters and schedules survive SIGKILL on every durable store.

gearmand forgets a background job when it ends; gearshift keeps its outcome, its retry
state and its dead letter in the store, and its schedules too. Each test here runs a real
``gearshift serve`` on one backend, kills it with SIGKILL (no graceful flush) and
restarts it on the same store, then asks the admin protocol (``result``, ``dead``,
``schedules``) what it remembers. The broker-level logic (backoff arithmetic, cron
slots firing) is covered in tests/broker; here only what must reach the disk is.

Store writes other than a job's add are fire-and-forget, so before each SIGKILL a marker
background job is submitted once the server has *processed* the change (seen through
the admin protocol): the group committer writes in queue order, so the marker's
JOB_CREATED proves everything queued before it has committed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from gearshift.store import StoredOutcome, open_store
from gearshift.testing import GearshiftServer

from ._link import Link, P, admin
from .conftest import Target

FUNC = b"f"
MARKER = b"marker"
#: Longest any wait for something the server does by itself may take.
DEADLINE_S = 10.0


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    """Poll ``predicate()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def result(server: GearshiftServer, handle: bytes) -> dict[str, Any] | None:
    """Admin ``result HANDLE``: the JSON record, or None for ``ERR UNKNOWN_JOB``."""
    lines = admin(server.host, server.port, "result " + handle.decode())
    assert len(lines) == 1, lines
    if lines[0] == "ERR UNKNOWN_JOB":
        return None
    assert lines[0].startswith("OK "), lines
    record: dict[str, Any] = json.loads(lines[0][3:])
    return record


def listing(server: GearshiftServer, command: str) -> list[dict[str, Any]]:
    """An admin listing of JSON lines (``dead``, ``schedules``)."""
    return [json.loads(line) for line in admin(server.host, server.port, command)]


def state_of(server: GearshiftServer, handle: bytes) -> str | None:
    record = result(server, handle)
    return None if record is None else str(record["state"])


def commit_barrier(server: GearshiftServer) -> None:
    """Return once every store write the server queued so far has committed."""
    with Link(server.host, server.port) as client:
        client.submit(P.SUBMIT_JOB_BG, MARKER, b"", b"")


def crash_and_restart(server: GearshiftServer) -> None:
    commit_barrier(server)
    server.kill()
    server.start()


def stored_outcomes(target: Target, server: GearshiftServer) -> dict[bytes, StoredOutcome]:
    """The outcomes in the store right now, read by a second store object behind the
    server's back (the only reader memcached allows: it cannot list keys)."""
    async def read() -> list[StoredOutcome]:
        store = open_store(target.url, data_dir=os.path.join(server.workdir, "data"))
        await store.open()
        try:
            return await store.load_outcomes()
        finally:
            await store.close()

    return {o.handle: o for o in asyncio.run(read())}


def grab_within(worker: Link, timeout: float = DEADLINE_S) -> list[bytes]:
    """Poll GRAB_JOB_UNIQ until a job is assigned (a retry becomes due, say)."""
    got = wait_for(worker.grab, "a job to be assigned", timeout)
    assert isinstance(got, list)
    return got


def quiet(link: Link, seconds: float) -> bool:
    """True when nothing arrives on ``link`` (and it is not closed) for ``seconds``."""
    link.sock.settimeout(seconds)
    try:
        link.sock.recv(1 << 16)
    except TimeoutError:
        return True
    finally:
        link.sock.settimeout(30.0)
    return False


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_completed_outcome_survives_sigkill(any_target: Target) -> None:
    """The result data and timestamps of a finished background job come back as kept."""
    payload, answer = b"in\x00put", b"out\x00\xff\x01put"
    with GearshiftServer(store=any_target.url) as server:
        with Link(server.host, server.port) as client:
            handle = client.submit(P.SUBMIT_JOB_BG, FUNC, b"u-a", payload)
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert grab_within(worker) == [handle, FUNC, b"u-a", payload]
            worker.send(P.WORK_COMPLETE, handle, answer)
            before = wait_for(lambda: state_of(server, handle) == "complete"
                              and result(server, handle), "the outcome")
        assert base64.b64decode(before["data_b64"]) == answer
        assert before["attempts"] == 1
        assert not before["dead"]
        assert before["submitted"] <= before["started"] <= before["ended"] <= time.time()

        crash_and_restart(server)
        assert result(server, handle) == before, "the kept outcome changed across SIGKILL"
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert worker.grab() is None, "the completed job was replayed"


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_dead_letter_survives_sigkill_and_can_be_retried(any_target: Target) -> None:
    """Three failed attempts (WORK_FAIL, then WORK_EXCEPTIONs) make a dead letter that
    keeps every reason and the payload through SIGKILL; ``retry dead`` runs it again."""
    payload = b"pay\x00load"
    with GearshiftServer(store=any_target.url,
                         extra_args=["--retry", "f=3:200ms:1s"]) as server:
        with Link(server.host, server.port) as client:
            handle = client.submit(P.SUBMIT_JOB_BG, FUNC, b"u-b", payload)
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            for attempt in (1, 2, 3):
                assert grab_within(worker) == [handle, FUNC, b"u-b", payload]
                if attempt == 1:
                    worker.send(P.WORK_FAIL, handle)
                else:
                    worker.send(P.WORK_EXCEPTION, handle, b"boom %d" % attempt)
            wait_for(lambda: state_of(server, handle) == "dead", "the dead letter")
            assert worker.grab() is None, "a fourth attempt was handed out"
        dead = listing(server, "dead")
        assert [d["handle"] for d in dead] == [handle.decode()]
        letter = dead[0]
        assert letter["attempts"] == 3
        assert letter["reasons"] == ["the worker reported failure (WORK_FAIL)",
                                     "boom 2", "boom 3"]
        assert base64.b64decode(letter["payload_b64"]) == payload

        crash_and_restart(server)
        assert listing(server, "dead") == [letter], "the dead letter changed across SIGKILL"
        assert result(server, handle) == letter

        assert admin(server.host, server.port, "retry dead " + handle.decode()) == ["OK 1"]
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert grab_within(worker) == [handle, FUNC, b"u-b", payload]
            worker.send(P.WORK_COMPLETE, handle, b"fine")
            done = wait_for(lambda: state_of(server, handle) == "complete"
                            and result(server, handle), "the retried job to complete")
        assert base64.b64decode(done["data_b64"]) == b"fine"
        assert done["attempts"] == 1, "a retried dead letter starts with fresh attempts"
        assert listing(server, "dead") == []


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_retry_backoff_and_count_survive_sigkill(any_target: Target) -> None:
    """A job waiting out its backoff comes back scheduled, with its attempt counted,
    and is not handed out before its run-at time (30 s +-20%, far beyond the test)."""
    with GearshiftServer(store=any_target.url, extra_args=["--retry", "f=5:30s"]) as server:
        with Link(server.host, server.port) as client:
            handle = client.submit(P.SUBMIT_JOB_BG, FUNC, b"u-c", b"c")
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert grab_within(worker)[0] == handle
            worker.send(P.WORK_FAIL, handle)
            before = wait_for(lambda: state_of(server, handle) == "scheduled"
                              and result(server, handle), "the retry to be planned")
        assert before["attempts"] == 1
        assert before["next_run"] > time.time() + 20

        crash_and_restart(server)
        after = result(server, handle)
        assert after is not None, "the job waiting for its retry was lost"
        assert after["state"] == "scheduled", after
        assert after["attempts"] == 1, "the failed attempt was not persisted"
        # The store keeps whole seconds, rounded up: never earlier than planned.
        assert before["next_run"] <= after["next_run"] <= before["next_run"] + 1
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert worker.grab() is None, "the job ran before its backoff was over"
            worker.send(P.PRE_SLEEP)
            assert quiet(worker, 0.5), "a sleeping worker was woken for a job not due"
        assert state_of(server, handle) == "scheduled"


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_schedules_survive_sigkill(any_target: Target) -> None:
    """Schedules from SUBMIT_JOB_SCHED and admin ``schedule add`` come back with the same
    key, cron, data and priority; one removed before the crash stays removed."""
    with GearshiftServer(store=any_target.url) as server:
        with Link(server.host, server.port) as client:
            # minute 0, hour 3, day 1, month 1, any day of the week: "0 3 1 1 *".
            kind, fields = client.request(P.SUBMIT_JOB_SCHED, b"report", b"u-d", b"0", b"3",
                                          b"1", b"1", b"", b"data\x00d")
            assert kind == P.JOB_CREATED, (P(kind).name, fields)
            packet_key = fields[0]
        data = base64.b64encode(b"admin\x00data").decode()
        reply = admin(server.host, server.port,
                      f"schedule add cleanup 15 4 2 2 * unique=u-e data={data} priority=high")
        assert len(reply) == 1, reply
        assert reply[0].startswith("OK "), reply
        admin_key = reply[0][3:]
        reply = admin(server.host, server.port, "schedule add gone 0 0 1 1 *")
        gone_key = reply[0][3:]
        assert admin(server.host, server.port, "schedule rm " + gone_key) == ["OK"]

        before = listing(server, "schedules")
        assert [(s["key"], s["function"], s["cron"]) for s in before] == [
            (packet_key.decode(), "report", "0 3 1 1 *"),
            (admin_key, "cleanup", "15 4 2 2 *"),
        ]
        assert base64.b64decode(before[0]["data_b64"]) == b"data\x00d"
        assert before[1]["priority"] == 0
        assert before[1]["unique"] == "u-e"

        crash_and_restart(server)
        assert listing(server, "schedules") == before, "schedules changed across SIGKILL"


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_expired_outcome_is_deleted_from_the_store(any_target: Target) -> None:
    """With ``--keep-results 1s`` an outcome disappears from ``result`` and from the
    store itself, so a restart does not bring it back."""
    with GearshiftServer(store=any_target.url, extra_args=["--keep-results", "1s"]) as server:
        with Link(server.host, server.port) as client:
            handle = client.submit(P.SUBMIT_JOB_BG, FUNC, b"u-e", b"e")
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert grab_within(worker)[0] == handle
            worker.send(P.WORK_COMPLETE, handle, b"short-lived")
            wait_for(lambda: state_of(server, handle) == "complete", "the outcome")
        ended = time.time()
        commit_barrier(server)
        # Not vacuous: the outcome did reach the store before it expired.
        assert handle in stored_outcomes(any_target, server)

        wait_for(lambda: result(server, handle) is None, "the outcome to expire", 5.0)
        assert time.time() >= ended + 0.5, "the outcome expired long before --keep-results"
        wait_for(lambda: handle not in stored_outcomes(any_target, server),
                 "the expired outcome to be deleted from the store", 5.0)

        crash_and_restart(server)
        assert result(server, handle) is None, "an expired outcome came back after restart"


@pytest.mark.timeout(30)
def test_memory_store_outcomes_do_not_survive_restart() -> None:
    """``--store memory`` keeps outcomes while the server runs, and only then (documented:
    nothing of the memory store outlives the process)."""
    with GearshiftServer(store="memory") as server:
        with Link(server.host, server.port) as client:
            handle = client.submit(P.SUBMIT_JOB_BG, FUNC, b"", b"m")
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, FUNC)
            assert grab_within(worker)[0] == handle
            worker.send(P.WORK_COMPLETE, handle, b"in memory")
            record = wait_for(lambda: result(server, handle), "the outcome")
        assert record["state"] == "complete"
        assert base64.b64decode(record["data_b64"]) == b"in memory"
        server.stop()
        server.start()
        assert result(server, handle) is None
