"""The broker's storage contract: background jobs wait for the store before JOB_CREATED,
a failed write is a QUEUE_ERROR, finished jobs are removed, restored jobs keep their
handle and coalesce. The store here is a recorder the test answers by hand -- the real
stores are exercised through the same hooks in tests/store."""

from __future__ import annotations

from gearshift.broker import PENDING, Broker, Peer
from gearshift.protocol import ErrorCode

from ._harness import (
    Clock,
    P,
    RecordingStore,
    admin,
    grab,
    grab_handle,
    make_broker,
    take,
    worker,
)


def _durable(**config: object) -> tuple[Broker, RecordingStore]:
    broker = make_broker(None, **config)
    store = RecordingStore()
    broker.store = store
    return broker, store


def test_job_created_is_withheld_until_persisted() -> None:
    broker, store = _durable()
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"u", b"d")
    assert take(c) == []
    [job] = store.added
    assert job.state == PENDING
    w = worker(broker, b"f")
    assert grab(broker, w) == (P.NO_JOB, [])  # not runnable before it is stored
    broker.persisted(job)
    assert take(c) == [(P.JOB_CREATED, [job.handle])]
    assert grab(broker, w) == (P.JOB_ASSIGN, [job.handle, b"f", b"d"])


def test_submitter_coalesced_while_pending_is_answered_on_commit() -> None:
    broker, store = _durable()
    c1, c2 = broker.connect(), broker.connect()
    broker.handle(c1, P.SUBMIT_JOB_BG, b"f", b"u", b"d")
    broker.handle(c2, P.SUBMIT_JOB_BG, b"f", b"u", b"d")
    assert len(store.added) == 1
    assert take(c2) == []
    broker.persisted(store.added[0])
    assert take(c1) == take(c2) == [(P.JOB_CREATED, [store.added[0].handle])]


def test_foreground_jobs_are_not_stored() -> None:
    broker, store = _durable()
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB, b"f", b"", b"d")
    [(ptype, _)] = take(c)
    assert ptype == P.JOB_CREATED
    assert store.added == []


def test_persist_failed_is_a_queue_error_and_forgets_the_job() -> None:
    broker, store = _durable()
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"u", b"d")
    job = store.added[0]
    broker.persist_failed(job, "disk full")
    assert take(c) == [(P.ERROR, [ErrorCode.QUEUE_ERROR, b"disk full"])]
    assert dict(broker.jobs.items()) == {}
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"u", b"d")  # the unique is free again
    assert len(store.added) == 2
    assert store.added[1].handle != job.handle


def test_late_callbacks_for_a_settled_job_are_ignored() -> None:
    broker, store = _durable()
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"d")
    job = store.added[0]
    broker.persisted(job)
    take(c)
    broker.persisted(job)
    broker.persist_failed(job, "late")
    assert take(c) == []
    assert job.handle in broker.jobs


def test_removed_on_complete_fail_and_exception() -> None:
    broker, store = _durable()
    done = []
    for ptype, extra in ((P.WORK_COMPLETE, [b"r"]), (P.WORK_FAIL, []),
                         (P.WORK_EXCEPTION, [b"e"])):
        c = broker.connect()
        broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"d")
        broker.persisted(store.added[-1])
        w = worker(broker, b"f")
        h = grab_handle(broker, w)
        broker.handle(w, ptype, h, *extra)
        done.append(h)
    assert store.removed == done


def test_removed_on_cancel() -> None:
    broker, store = _durable()
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"d")
    job = store.added[0]
    broker.persisted(job)
    assert admin(broker, c, b"cancel job " + job.handle) == b"OK\r\n"
    assert store.removed == [job.handle]


def test_retries_recorded_then_removed_when_job_retries_drops_it() -> None:
    broker, store = _durable(job_retries=2)
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"d")
    job = store.added[0]
    broker.persisted(job)
    for _ in range(2):
        w = worker(broker, b"f")
        assert grab_handle(broker, w) == job.handle
        broker.disconnect(w)
    assert store.retried == [(job.handle, 1)]
    assert store.removed == [job.handle]
    assert dict(broker.jobs.items()) == {}


def test_restore_keeps_handle_and_coalescing() -> None:
    broker, store = _durable()
    job = broker.restore(b"H:old:7", b"f", b"u", b"d", priority=0, retries=3)
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"u", b"d")
    assert take(c) == [(P.JOB_CREATED, [b"H:old:7"])]  # coalesced: no new job, no add
    assert store.added == []
    assert admin(broker, c, b"show jobs") == b"H:old:7\t3\t0\t1\n.\n"
    w = worker(broker, b"f")
    assert grab(broker, w) == (P.JOB_ASSIGN, [b"H:old:7", b"f", b"d"])
    broker.handle(w, P.WORK_COMPLETE, job.handle, b"")
    assert store.removed == [b"H:old:7"]


def test_restore_of_a_future_epoch_job_schedules_it() -> None:
    clock = Clock()
    broker = make_broker(clock)
    broker.store = RecordingStore()
    broker.restore(b"H:old:1", b"f", b"", b"d", priority=1, when=int(clock.now) + 30)
    w = worker(broker, b"f")
    assert grab(broker, w) == (P.NO_JOB, [])
    clock.advance(30)
    broker.run_timers()
    assert grab_handle(broker, w) == b"H:old:1"


def _joined_foreground_job() -> tuple[Broker, RecordingStore, list[Peer], bytes]:
    """A foreground job that a background submission and then another foreground
    submission joined (with a store, the background joiner may make the broker write it)."""
    broker, store = _durable()
    fg, bg, late = broker.connect(), broker.connect(), broker.connect()
    broker.handle(fg, P.SUBMIT_JOB, b"f", b"u", b"x")
    [(_, [handle])] = take(fg)
    broker.handle(bg, P.SUBMIT_JOB_BG, b"f", b"u", b"x")
    broker.handle(late, P.SUBMIT_JOB, b"f", b"u", b"x")
    return broker, store, [fg, bg, late], handle


def _run_to_completion(broker: Broker, handle: bytes) -> None:
    w = worker(broker, b"f")
    assert grab_handle(broker, w) == handle
    broker.handle(w, P.WORK_COMPLETE, handle, b"r")


def test_joiner_hears_job_created_before_any_result() -> None:
    broker, store, [fg, bg, late], handle = _joined_foreground_job()
    _run_to_completion(broker, handle)  # finishes while any store write is in flight
    for job in list(store.added):
        broker.persisted(job)
    assert take(fg) == [(P.WORK_COMPLETE, [handle, b"r"])]
    assert take(bg) == [(P.JOB_CREATED, [handle])]
    # A client cannot match a result to a handle it has not been given yet.
    assert take(late) == [(P.JOB_CREATED, [handle]), (P.WORK_COMPLETE, [handle, b"r"])]


def test_joiner_told_queue_error_hears_nothing_more_of_the_job() -> None:
    broker, store, [fg, _bg, late], handle = _joined_foreground_job()
    for job in list(store.added):
        broker.persist_failed(job, "boom")
    _run_to_completion(broker, handle)
    assert take(fg) == [(P.WORK_COMPLETE, [handle, b"r"])]
    replies = take(late)
    # Either its submission was accepted (JOB_CREATED, then the result) or refused
    # (QUEUE_ERROR, then silence) -- never refused and then answered.
    assert replies in (
        [(P.JOB_CREATED, [handle]), (P.WORK_COMPLETE, [handle, b"r"])],
        [(P.ERROR, [ErrorCode.QUEUE_ERROR, b"boom"])],
    ), replies
