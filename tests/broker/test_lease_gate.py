"""The broker's lease gate (server/_cluster.py): past ``lease_until`` nothing is handed
out, sleeping workers are not woken for it, and a renewal wakes them again."""

from __future__ import annotations

from gearshift.broker import Broker

from ._harness import Clock, P, grab, make_broker, submit, take, worker


def _setup(clock: Clock) -> Broker:
    broker = make_broker(clock)
    broker.lease_renewed(clock.now + 4.0)
    return broker


def test_jobs_are_handed_out_while_the_lease_holds() -> None:
    clock = Clock()
    broker = _setup(clock)
    h = submit(broker, broker.connect(), b"f", b"x")
    clock.advance(3.9)
    assert grab(broker, worker(broker, b"f")) == (P.JOB_ASSIGN, [h, b"f", b"x"])


def test_a_lapsed_lease_hands_out_nothing_and_does_not_wake_sleepers() -> None:
    clock = Clock()
    broker = _setup(clock)
    h = submit(broker, broker.connect(), b"f", b"x")
    w = worker(broker, b"f")
    clock.advance(4.0)
    assert grab(broker, w) == (P.NO_JOB, [])
    broker.handle(w, P.PRE_SLEEP)
    assert take(w) == []  # no NOOP: the queued job may belong to another server by now
    # Renewed: the sleeping worker is woken and gets the job.
    broker.lease_renewed(clock.now + 4.0)
    assert take(w) == [(P.NOOP, [])]
    assert grab(broker, w) == (P.JOB_ASSIGN, [h, b"f", b"x"])


def test_no_lease_means_no_gate() -> None:
    clock = Clock()
    broker = make_broker(clock)
    assert broker.lease_until == 0.0
    h = submit(broker, broker.connect(), b"f", b"x")
    clock.advance(10_000.0)
    assert grab(broker, worker(broker, b"f")) == (P.JOB_ASSIGN, [h, b"f", b"x"])
