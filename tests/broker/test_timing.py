"""Queue-wait and run-time histograms (``BrokerConfig.timing``, on with the HTTP port):
each job's wait and run land in the right bucket of its function, by the injected clock."""

from __future__ import annotations

from gearshift.broker._timing import TIME_BUCKETS, Histogram

from ._harness import Clock, P, grab_handle, make_broker, submit, take, worker


def bucket(seconds: float) -> int:
    """Index of the bucket ``seconds`` falls in, found independently of observe()."""
    return next((i for i, bound in enumerate(TIME_BUCKETS) if seconds <= bound),
                len(TIME_BUCKETS))


def test_the_bucket_chain_agrees_with_the_bounds() -> None:
    # bucket_of is written out as comparisons; it must match TIME_BUCKETS exactly, at,
    # just above and just below every bound
    for bound in (*TIME_BUCKETS, 0.0, 1e12):
        for seconds in (bound, bound * (1 - 1e-9), bound * (1 + 1e-9)):
            hist = Histogram()
            hist.observe(seconds)
            assert hist.counts == [int(i == bucket(seconds))
                                   for i in range(len(TIME_BUCKETS) + 1)], seconds


def test_bucket_bounds_are_inclusive_and_the_last_takes_the_rest() -> None:
    hist = Histogram()
    for seconds in (0.0, 0.0005, 0.00051, 1.0, 3600.0, 3600.5, 1e9):
        hist.observe(seconds)
    hist.observe(-1.0)  # a clock stepping back counts as no time at all
    expected = [0] * (len(TIME_BUCKETS) + 1)
    for seconds in (0.0, 0.0005, 0.00051, 1.0, 3600.0, 3600.5, 1e9, 0.0):
        expected[bucket(seconds)] += 1
    assert hist.counts == expected
    assert hist.counts[0] == 3
    assert hist.counts[-1] == 2
    assert hist.total == 0.0005 + 0.00051 + 1.0 + 3600.0 + 3600.5 + 1e9


def test_a_jobs_wait_and_run_are_timed_per_function() -> None:
    clock = Clock(1000.0)
    broker = make_broker(clock, timing=True)
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f", b"in")  # (reads the client's reply: a flush)
    clock.advance(0.3)
    assert grab_handle(broker, w) == handle
    clock.advance(2.0)
    broker.handle(w, P.WORK_COMPLETE, handle, b"out")
    func = broker.functions[b"f"]
    assert func.wait_times is not None
    assert func.run_times is not None
    assert func.wait_times.counts[bucket(0.3)] == 1
    assert sum(func.wait_times.counts) == 1
    assert func.run_times.counts[bucket(2.0)] == 1
    assert sum(func.run_times.counts) == 1
    assert abs(func.wait_times.total - 0.3) < 1e-6
    assert abs(func.run_times.total - 2.0) < 1e-6


def test_failed_runs_are_timed_too_and_nothing_is_timed_when_off() -> None:
    clock = Clock(1000.0)
    broker = make_broker(clock, timing=True)
    c, w = broker.connect(), worker(broker, b"f")
    handle = submit(broker, c, b"f", b"in")
    grab_handle(broker, w)
    take(c)
    clock.advance(45.0)
    broker.handle(w, P.WORK_FAIL, handle)
    run_times = broker.functions[b"f"].run_times
    assert run_times is not None
    assert run_times.counts[bucket(45.0)] == 1

    off = make_broker(Clock(1000.0))
    c, w = off.connect(), worker(off, b"f")
    handle = submit(off, c, b"f", b"in")
    grab_handle(off, w)
    off.handle(w, P.WORK_COMPLETE, handle, b"out")
    assert off.functions[b"f"].wait_times is None
    assert off.functions[b"f"].run_times is None
