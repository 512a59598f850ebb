"""Job outcomes, retries with backoff, dead letters and schedules, by plain calls.

The broker does no I/O, so every rule here is driven packet by packet with an injected
clock and a recording store; the same rules over real sockets and real stores are in
tests/server/test_outcomes_server.py.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearshift.broker import Broker, Peer, RetryPolicies, parse_retry
from gearshift.broker._outcomes import Outcome, OutcomeBook

from ._harness import (
    Clock,
    P,
    RecordingStore,
    admin,
    grab,
    grab_handle,
    make_broker,
    submit,
    take,
    worker,
)


def result(broker: Broker, peer: Peer, handle: bytes) -> dict[str, object]:
    reply = admin(broker, peer, b"result " + handle)
    assert reply.startswith(b"OK {"), reply
    assert reply.endswith(b"}\n"), reply
    parsed: dict[str, object] = json.loads(reply[3:])
    return parsed


def test_background_result_is_kept_with_timestamps() -> None:
    clock = Clock(1000.0)
    broker = make_broker(clock)
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f", b"in", b"u1", P.SUBMIT_JOB_BG)
    assert result(broker, c, handle)["state"] == "queued"
    clock.advance(2)
    assert grab_handle(broker, w) == handle
    assert result(broker, c, handle)["state"] == "running"
    clock.advance(3)
    broker.handle(w, P.WORK_COMPLETE, handle, b"out\0bytes")
    got = result(broker, c, handle)
    assert got["state"] == "complete"
    assert got["dead"] is False
    assert got["data_b64"] == "b3V0AGJ5dGVz"  # base64 of b"out\0bytes"
    assert (got["submitted"], got["started"], got["ended"]) == (1000.0, 1002.0, 1005.0)
    assert got["attempts"] == 1
    assert got["function"] == "f"
    assert got["unique"] == "u1"


def test_what_one_loop_iteration_handles_shares_one_clock_reading() -> None:
    # The broker reads the clock once per moment: from a batch that arrives with nothing
    # awaiting a flush up to the flush (take_dirty), as one event-loop iteration does.
    clock = Clock(1000.0)
    broker = make_broker(clock)
    c, w = broker.connect(), worker(broker, b"f")
    take(w)  # nothing awaits a flush
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"in")  # the JOB_CREATED awaits a flush
    clock.advance(2)
    broker.handle(w, P.GRAB_JOB)  # the same iteration: the same reading
    clock.advance(3)
    [(ptype, fields)] = take(w)  # the flush ends the moment
    assert ptype == P.JOB_ASSIGN
    handle = fields[0]
    broker.handle(w, P.WORK_COMPLETE, handle, b"out")
    got = result(broker, c, handle)
    assert (got["submitted"], got["started"], got["ended"]) == (1000.0, 1000.0, 1005.0)


def test_foreground_results_are_not_kept_and_unknown_handles_say_so() -> None:
    broker = make_broker()
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_COMPLETE, handle, b"r")
    assert admin(broker, c, b"result " + handle) == b"ERR UNKNOWN_JOB\r\n"
    assert admin(broker, c, b"result H:garbage\x00\xff") == b"ERR UNKNOWN_JOB\r\n"
    assert admin(broker, c, b"result H:t:1 extra").startswith(b"ERR INVALID_ARGUMENTS")
    assert admin(broker, c, b"result").startswith(b"ERR INVALID_ARGUMENTS")


def test_keep_results_zero_keeps_none_and_outcomes_expire() -> None:
    clock = Clock()
    broker = make_broker(clock, keep_results=0.0)
    broker.outcomes.keep = 0.0
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    grab_handle(broker, w)
    broker.handle(w, P.WORK_COMPLETE, handle, b"r")
    assert admin(broker, c, b"result " + handle) == b"ERR UNKNOWN_JOB\r\n"

    broker = make_broker(clock)  # the default: one hour
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    grab_handle(broker, w)
    broker.handle(w, P.WORK_COMPLETE, handle, b"r")
    deadline = broker.next_deadline()
    assert deadline is not None
    assert clock.now + 3600 <= deadline <= clock.now + 3602
    clock.advance(3599)
    broker.run_timers()
    assert result(broker, c, handle)["state"] == "complete"
    clock.advance(2)
    broker.run_timers()
    assert admin(broker, c, b"result " + handle) == b"ERR UNKNOWN_JOB\r\n"
    assert broker.next_deadline() is None


def test_outcome_budget_drops_the_oldest_first() -> None:
    book = OutcomeBook(keep=60, max_bytes=3000, dead_max_bytes=1000)
    kept = [Outcome(b"H:%d" % n, b"f", b"", "complete", b"x" * 500, 1, 0, 0, 100 + n)
            for n in range(6)]
    evicted = [h for k in kept for h in book.add(k)]
    # 744 bytes each (500 of result, 5 of names, 240 of overhead): four fit in 3000.
    assert evicted == [b"H:0", b"H:1"]
    assert book.result_handles() == [b"H:2", b"H:3", b"H:4", b"H:5"]
    assert book.results_bytes <= 3000
    assert book.evicted == 2
    huge = Outcome(b"H:dead", b"f", b"", "dead", b"", 3, 0, 0, 9, True, b"p" * 2000)
    assert book.add(huge) == [b"H:dead"]  # alone over its budget: not kept
    assert book.get(b"H:dead") is None
    assert book.dead_bytes == 0


def test_failure_without_policy_is_a_dead_letter_with_its_reason() -> None:
    broker = make_broker()
    store = RecordingStore()
    broker.store = store
    c, w = broker.connect(), worker(broker, b"f")
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"payload")
    job = store.added[-1]
    broker.persisted(job)
    (_, (handle,)), = take(c)
    assert grab_handle(broker, w) == handle
    broker.handle(w, P.WORK_EXCEPTION, handle, b"ValueError: bad input")
    got = result(broker, c, handle)
    assert (got["state"], got["dead"], got["reason"]) == (
        "exception", True, "ValueError: bad input")
    assert got["reasons"] == ["ValueError: bad input"]
    assert got["payload_b64"] == "cGF5bG9hZA=="
    # The job's row left the store and its dead letter was written in its place.
    assert handle in store.removed
    stored = store.outcomes[handle]
    assert stored is not None
    assert stored.dead
    assert stored.data == b"payload"
    lines = admin(broker, c, b"dead").split(b"\n")
    assert lines[-2:] == [b".", b""]
    assert json.loads(lines[0])["handle"] == handle.decode()


def test_retry_policy_backs_off_then_buries() -> None:
    clock = Clock(5000.0)
    broker = make_broker(clock, retry=RetryPolicies([parse_retry("f=3:10s:15s")]))
    broker.rng = random.Random(7)
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f", b"d", ptype=P.SUBMIT_JOB_BG)
    assert grab_handle(broker, w) == handle
    broker.handle(w, P.WORK_FAIL, handle)
    first = result(broker, c, handle)
    assert first["state"] == "scheduled"
    assert first["attempts"] == 1
    delay = float(first["next_run"]) - clock.now  # type: ignore[arg-type]
    assert 8.0 <= delay <= 12.0  # BASE 10 s, jitter +-20 %
    assert grab(broker, w)[0] == P.NO_JOB  # nothing runs before the backoff
    clock.advance(delay)
    broker.run_timers()
    assert grab_handle(broker, w) == handle
    broker.handle(w, P.WORK_EXCEPTION, handle, b"second")
    second = result(broker, c, handle)
    assert 12.0 <= float(second["next_run"]) - clock.now <= 15.0  # 20 s, capped at MAX
    clock.advance(15)
    broker.run_timers()
    assert grab_handle(broker, w) == handle
    broker.handle(w, P.WORK_EXCEPTION, handle, b"third")
    dead = result(broker, c, handle)
    assert (dead["state"], dead["dead"], dead["attempts"]) == ("dead", True, 3)
    assert dead["reasons"] == [
        "the worker reported failure (WORK_FAIL)", "second", "third"]
    assert grab(broker, w)[0] == P.NO_JOB


def test_retry_policy_covers_lost_workers_and_timeouts() -> None:
    clock = Clock()
    broker = make_broker(clock, retry=RetryPolicies([parse_retry("*=2:1s")]))
    c = broker.connect()
    handle = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    w1 = worker(broker, b"f")
    grab_handle(broker, w1)
    broker.disconnect(w1)
    assert result(broker, c, handle)["state"] == "scheduled"
    clock.advance(2)
    broker.run_timers()
    w2 = broker.connect()
    broker.handle(w2, P.CAN_DO_TIMEOUT, b"f", b"1000")
    assert grab_handle(broker, w2) == handle
    clock.advance(1.5)
    broker.run_timers()
    dead = result(broker, c, handle)
    assert dead["state"] == "dead"
    assert dead["reasons"] == ["worker disconnected while running the job", "timeout after 1s"]


def test_job_retries_flag_buries_background_jobs_with_a_reason() -> None:
    broker = make_broker(job_retries=2)
    c = broker.connect()
    handle = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    for _ in range(2):
        w = worker(broker, b"f")
        grab_handle(broker, w)
        broker.disconnect(w)
    got = result(broker, c, handle)
    assert got["state"] == "dead"
    assert "dropped after 2 attempts (-j 2)" in str(got["reason"])


def test_foreground_failures_are_unchanged_by_a_policy() -> None:
    broker = make_broker(retry=RetryPolicies([parse_retry("*=5")]))
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_FAIL, handle)
    assert take(c) == [(P.WORK_FAIL, [handle])]
    assert admin(broker, c, b"result " + handle) == b"ERR UNKNOWN_JOB\r\n"
    assert admin(broker, c, b"dead") == b".\n"


def test_retry_and_purge_dead_letters() -> None:
    broker = make_broker()
    c, w = broker.connect(), worker(broker, b"f", b"g")
    handles = [submit(broker, c, fn, b"%d" % n, ptype=P.SUBMIT_JOB_BG)
               for n, fn in enumerate((b"f", b"f", b"g"))]
    for _ in handles:
        broker.handle(w, P.WORK_FAIL, grab_handle(broker, w))
    assert admin(broker, c, b"retry dead H:nope") == b"ERR UNKNOWN_JOB\r\n"
    assert admin(broker, c, b"retry dead function f") == b"OK 2\n"
    assert {grab_handle(broker, w), grab_handle(broker, w)} == set(handles[:2])
    assert result(broker, c, handles[0])["state"] == "running"  # the same handle again
    assert admin(broker, c, b"purge dead all") == b"OK 1\n"
    assert admin(broker, c, b"dead") == b".\n"
    assert admin(broker, c, b"retry dead").startswith(b"ERR INVALID_ARGUMENTS")


def test_cancelled_background_job_outcome() -> None:
    broker = make_broker()
    c = broker.connect()
    handle = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    assert admin(broker, c, b"cancel job " + handle) == b"OK\r\n"
    assert result(broker, c, handle)["state"] == "cancelled"


def test_cancelled_running_background_job_outcome() -> None:
    clock = Clock()
    broker = make_broker(clock)
    c = broker.connect()
    handle = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    w = worker(broker, b"f")
    grab_handle(broker, w)
    clock.advance(2.0)
    assert admin(broker, c, b"cancel job " + handle) == b"OK\r\n"
    outcome = result(broker, c, handle)
    assert outcome["state"] == "cancelled"
    assert outcome["reason"] == "cancelled"
    assert outcome["ended"] - outcome["started"] == pytest.approx(2.0)


@pytest.mark.parametrize("spec", ["f", "f=", "f=0", "f=x", "f=3:soon", "f=3:10s:1s",
                                  "=3", "f=1:2:3:4"])
def test_bad_retry_specs_name_the_text(spec: str) -> None:
    with pytest.raises(ValueError, match="--retry"):
        parse_retry(spec)


def test_retry_policy_matching_exact_before_globs() -> None:
    policies = RetryPolicies([parse_retry("img.*=5"), parse_retry("*=3"),
                              parse_retry("img.big=9")])
    assert policies.for_function(b"img.big").attempts == 9  # type: ignore[union-attr]
    assert policies.for_function(b"img.small").attempts == 5  # type: ignore[union-attr]
    assert policies.for_function(b"mail").attempts == 3  # type: ignore[union-attr]
    assert RetryPolicies().for_function(b"mail") is None


def test_notes_for_operators_name_handle_and_function() -> None:
    """Failures, retries and dead letters are noted at INFO/WARNING; with ``trace`` every
    step of a job's life at DEBUG (the server logs what ``notify`` receives)."""
    broker = make_broker(retry=RetryPolicies([parse_retry("f=2:1s")]))
    notes: list[tuple[int, str]] = []
    broker.notify = lambda level, text: notes.append((level, text))
    broker.trace = True
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    grab_handle(broker, w)
    broker.handle(w, P.WORK_EXCEPTION, handle, b"boom")
    text = handle.decode()
    assert (10, f"job {text} (f) submitted (background, priority 1) by :0") in notes
    assert any(level == 10 and n.startswith(f"job {text} (f) assigned to") for level, n in notes)
    retried = [n for level, n in notes if level == 20]
    assert retried == [f"job {text} (f) failed (attempt 1 of 2): boom; retrying in "
                       + retried[0].rsplit(" ", 1)[1]]
    broker.clock.advance(2)  # type: ignore[attr-defined]
    broker.run_timers()
    grab_handle(broker, w)
    broker.handle(w, P.WORK_FAIL, handle)
    assert notes[-1] == (30, f"job {text} (f) is a dead letter after 2 failed attempt(s): "
                             "the worker reported failure (WORK_FAIL)")


@given(st.lists(st.tuples(st.sampled_from(["add", "get", "discard", "expire"]),
                          st.integers(0, 12)), max_size=80),
       st.integers(600, 4000))
def test_outcome_book_matches_a_plain_model(ops: list[tuple[str, int]], budget: int) -> None:
    """The lazily indexed book against an ordered dict: same records, same order, same
    drops, whatever mix of adds, lookups, discards, expiry and budget pressure."""
    book = OutcomeBook(keep=10.0, max_bytes=budget)
    model: dict[bytes, float] = {}  # handle -> ended, oldest first
    sizes: dict[bytes, int] = {}
    clock = 0.0
    for op, n in ops:
        handle = b"H:%d" % n
        clock += 1.0
        if op == "add":
            if book.get(handle) is not None:
                continue  # add_result's contract: a handle has no record yet
            dropped = book.add_result(handle, b"f", b"", "complete", b"x" * (n * 40), 1,
                                      0.0, 0.0, clock) or []
            model[handle] = clock
            sizes[handle] = 240 + len(handle) + 1 + n * 40
            expected: list[bytes] = []
            while sum(sizes[h] for h in model) > budget:
                oldest = next(iter(model))
                expected.append(oldest)
                del model[oldest]
            assert dropped == expected
        elif op == "get":
            found = book.get(handle)
            assert (found is not None) == (handle in model)
            if found is not None:
                assert found.ended == model[handle]
        elif op == "discard":
            assert book.discard(handle) == (handle in model)
            model.pop(handle, None)
        else:
            gone = book.expire(clock)
            assert gone == [h for h, ended in model.items() if ended <= clock - 10.0]
            for h in gone:
                del model[h]
        assert book.result_handles() == list(model)
        assert book.count == len(model)
        assert book.results_bytes == sum(sizes[h] for h in model)


def test_retrying_a_dead_letter_loses_nothing_when_the_store_write_fails() -> None:
    broker = make_broker()
    store = RecordingStore()
    broker.store = store
    c, w = broker.connect(), worker(broker, b"f")
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"payload")
    broker.persisted(store.added[-1])
    (_, (handle,)), = take(c)
    broker.handle(w, P.WORK_FAIL, grab_handle(broker, w))
    assert admin(broker, c, b"retry dead " + handle) == b"OK 1\n"
    # Until the job is written again, its dead letter stays in the store...
    assert store.outcomes[handle] is not None
    broker.persist_failed(store.added[-1], "store down")
    # ...and a failed write puts it back: still listed, still retryable.
    assert result(broker, c, handle)["dead"] is True
    assert admin(broker, c, b"retry dead " + handle) == b"OK 1\n"
    broker.persisted(store.added[-1])
    assert store.outcomes[handle] is None  # the job is stored: the dead letter goes
    assert grab_handle(broker, w) == handle
