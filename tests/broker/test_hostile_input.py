"""Names chosen by a hostile client cannot forge or hide admin listing rows, and queue
caps (``--max-queue``, admin ``maxqueue`` before the function exists) hold from the
first job on."""

from __future__ import annotations

import pytest

from gearshift.broker import Broker, Peer, QueueLimits, parse_max_queue
from gearshift.broker._core import MAX_PENDING_QUEUE_LIMITS
from gearshift.protocol import ErrorCode

from ._harness import P, admin, grab, grab_handle, make_broker, submit, take, worker

FORGER = b"evil\t7\t7\t7\n.\nhidden"


def _rows(listing: bytes) -> list[list[bytes]]:
    assert listing.endswith(b"\n.\n")
    return [line.split(b"\t") for line in listing[:-3].split(b"\n")]


NAMES = [FORGER, b"carriage\rreturn", b"back\\slash", b"del\x7f", b"plain"]


def test_status_has_one_row_per_function_whatever_its_name(broker: Broker,
                                                           console: Peer) -> None:
    c = broker.connect()
    for name in NAMES:
        submit(broker, c, name)
    rows = _rows(admin(broker, console, b"status"))
    assert [len(r) for r in rows] == [4] * len(NAMES)
    assert [r[0] for r in rows] == [
        b"evil\\x097\\x097\\x097\\x0a.\\x0ahidden",
        b"carriage\\x0dreturn",
        b"back\\x5cslash",  # the escape character itself, so no name forges an escape
        b"del\\x7f",
        b"plain",  # unchanged, byte for byte as gearmand prints it
    ]
    rows = _rows(admin(broker, console, b"prioritystatus"))
    assert [len(r) for r in rows] == [5] * len(NAMES)
    assert rows[0][0] == b"evil\\x097\\x097\\x097\\x0a.\\x0ahidden"


def test_workers_client_id_and_uniques_are_escaped(broker: Broker, console: Peer) -> None:
    w = worker(broker, FORGER)
    broker.handle(w, P.SET_CLIENT_ID, b"id\n.\n")
    listing = admin(broker, console, b"workers")
    assert listing.count(b"\n") == 3  # console, worker, terminator
    assert b" id\\x0a.\\x0a : evil\\x097\\x097\\x097\\x0a.\\x0ahidden\n" in listing
    c = broker.connect()
    submit(broker, c, b"f", unique=b"u\n.\nv")
    submit(broker, c, b"f", unique=b"plain-unique")
    assert admin(broker, console, b"show unique jobs") == (
        b"u\\x0a.\\x0av\nplain-unique\n.\n")
    assert len(_rows(admin(broker, console, b"show jobs"))) == 2


def test_maxqueue_before_the_function_exists_applies_when_it_appears(
        broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"maxqueue ghost 1") == b"OK\r\n"
    assert admin(broker, console, b"status") == b".\n"  # still not listed, as gearmand
    c = broker.connect()
    submit(broker, c, b"ghost")
    broker.handle(c, P.SUBMIT_JOB_BG, b"ghost", b"", b"second")
    assert take(c) == [(P.ERROR, [ErrorCode.QUEUE_ERROR, b"Job queue is full"])]


def test_pending_maxqueue_limits_are_bounded(broker: Broker) -> None:
    for i in range(MAX_PENDING_QUEUE_LIMITS + 10):
        broker.set_max_queue(b"f%d" % i, [1, 1, 1])
    assert len(broker.pending_max_queue) == MAX_PENDING_QUEUE_LIMITS
    assert b"f0" not in broker.pending_max_queue  # the oldest went first
    assert broker.function(b"f10").max_queue == [1, 1, 1]


@pytest.mark.parametrize(("spec", "limits"), [
    ("f=5", (5, 5, 5)), ("img.*=1,2,3", (1, 2, 3)), (" f = 0 ", (0, 0, 0)),
])
def test_parse_max_queue(spec: str, limits: tuple[int, int, int]) -> None:
    assert parse_max_queue(spec).limits == limits


@pytest.mark.parametrize("spec", ["f", "=5", "f=", "f=x", "f=1,2", "f=-1", "f=1,2,3,4"])
def test_parse_max_queue_rejects_malformed_specs_naming_them(spec: str) -> None:
    with pytest.raises(ValueError, match="--max-queue " + repr(spec).replace("*", r"\*")):
        parse_max_queue(spec)


def test_max_queue_rules_are_matched_when_a_function_is_first_seen() -> None:
    rules = QueueLimits([parse_max_queue("exact=1"), parse_max_queue("img.*=0,2,0"),
                         parse_max_queue("*=3")])
    broker = make_broker(max_queue=rules)
    c = broker.connect()
    submit(broker, c, b"exact")
    broker.handle(c, P.SUBMIT_JOB, b"exact", b"", b"2")
    assert take(c)[0][1][0] == ErrorCode.QUEUE_ERROR
    assert broker.function(b"img.resize").max_queue == [0, 2, 0]
    assert broker.function(b"other").max_queue == [3, 3, 3]
    # An admin maxqueue for a function not seen yet beats the startup rule.
    admin(broker, c, b"maxqueue later 7")
    assert broker.function(b"later").max_queue == [7, 7, 7]


def test_idle_function_records_are_forgotten_beyond_the_cap() -> None:
    broker = make_broker(max_idle_functions=20)
    console = broker.connect("127.0.0.1", 1)
    busy = broker.connect()
    submit(broker, busy, b"has-a-job")
    gone = worker(broker, b"capped")
    broker.handle(gone, P.CANT_DO, b"capped")
    assert admin(broker, console, b"maxqueue capped 5") == b"OK\r\n"
    hostile = broker.connect()
    for i in range(200):  # endless new names: registered, then dropped at once
        broker.handle(hostile, P.CAN_DO, b"name-%d" % i)
        broker.handle(hostile, P.CANT_DO, b"name-%d" % i)
    assert len(broker.functions) <= 40  # bounded: swept each time the cap is reached
    assert b"has-a-job" in broker.functions  # a job keeps its function
    assert b"capped" in broker.functions  # so does a setting of its own
    status = admin(broker, console, b"status")
    assert b"has-a-job\t1\t0\t0\n" in status
    # a forgotten name comes back as new on its next mention
    w = worker(broker, b"name-3")
    assert grab(broker, w) == (P.NO_JOB, [])


def test_max_memory_refuses_new_jobs_beyond_the_budget() -> None:
    broker = make_broker(max_memory=1000)
    c = broker.connect()
    first = submit(broker, c, b"f", data=b"x" * 600)
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"y" * 600)
    assert take(c) == [(P.ERROR, [b"QUEUE_ERROR",
                                  b"Memory for queued jobs is full (--max-memory)"])]
    assert submit(broker, c, b"f", data=b"z" * 300)  # what fits is still taken
    w = worker(broker, b"f")
    assert grab_handle(broker, w) == first
    broker.handle(w, P.WORK_COMPLETE, first, b"done")
    assert take(c) == [(P.WORK_COMPLETE, [first, b"done"])]
    assert broker.jobs.payload_bytes == 300  # the finished job's bytes are free again
    submit(broker, c, b"f", data=b"y" * 600)
