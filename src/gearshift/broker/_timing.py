"""Queue-wait and run-time histograms per function (``BrokerConfig.timing``: the server
turns it on with its HTTP listener, whose ``/metrics`` is their only reader). Compiled
with the broker: each job adds two observations when timing is on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gearshift.broker._model import Job


#: Upper bounds, in seconds, of the queue-wait and run-time histograms' buckets (a last
#: bucket takes the rest): from half a millisecond, where a sync job on loopback ends,
#: to an hour, where a background job's wait becomes an incident.
#: (Declared variable-length: mypyc left a fixed-length Final tuple of floats unset.)
TIME_BUCKETS: Final[tuple[float, ...]] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0, 1800.0, 3600.0)


class Histogram:
    """Counts of durations per bucket of :data:`TIME_BUCKETS` (:attr:`counts`, not
    cumulative: the metrics exposition adds them up) and their sum.

    One attribute per bucket, not a list: compiled, an attribute is an unboxed integer,
    where ``counts[i] += 1`` on a list boxed a new int object per step once a count
    passed 256 (measured: 450 of the 855 instructions per sync job that timing cost).
    The bucket is found by comparisons with literals (indexing TIME_BUCKETS compiled to
    a boxed float per step); most jobs wait and run briefly, so the first tests decide.
    tests/broker/test_timing.py checks the chain against TIME_BUCKETS.
    """

    __slots__ = ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10", "b11",
                 "b12", "b13", "b14", "b15", "b16", "b17", "b18", "b19", "total")

    def __init__(self) -> None:
        self.b0 = self.b1 = self.b2 = self.b3 = self.b4 = self.b5 = self.b6 = 0
        self.b7 = self.b8 = self.b9 = self.b10 = self.b11 = self.b12 = self.b13 = 0
        self.b14 = self.b15 = self.b16 = self.b17 = self.b18 = self.b19 = 0
        self.total = 0.0

    @property
    def counts(self) -> list[int]:
        return [self.b0, self.b1, self.b2, self.b3, self.b4, self.b5, self.b6, self.b7,
                self.b8, self.b9, self.b10, self.b11, self.b12, self.b13, self.b14,
                self.b15, self.b16, self.b17, self.b18, self.b19]

    def observe(self, seconds: float) -> None:
        if seconds < 0.0:  # the clock stepped back
            seconds = 0.0
        self.total += seconds
        if seconds <= 0.01:
            if seconds <= 0.0005:
                self.b0 += 1
            elif seconds <= 0.001:
                self.b1 += 1
            elif seconds <= 0.0025:
                self.b2 += 1
            elif seconds <= 0.005:
                self.b3 += 1
            else:
                self.b4 += 1
        elif seconds <= 1.0:
            if seconds <= 0.025:
                self.b5 += 1
            elif seconds <= 0.05:
                self.b6 += 1
            elif seconds <= 0.1:
                self.b7 += 1
            elif seconds <= 0.25:
                self.b8 += 1
            elif seconds <= 0.5:
                self.b9 += 1
            else:
                self.b10 += 1
        else:
            self._long(seconds)

    def _long(self, seconds: float) -> None:
        """:meth:`observe` above a second."""
        if seconds <= 10.0:
            if seconds <= 2.5:
                self.b11 += 1
            elif seconds <= 5.0:
                self.b12 += 1
            else:
                self.b13 += 1
        elif seconds <= 60.0:
            if seconds <= 30.0:
                self.b14 += 1
            else:
                self.b15 += 1
        elif seconds <= 300.0:
            self.b16 += 1
        elif seconds <= 1800.0:
            self.b17 += 1
        elif seconds <= 3600.0:
            self.b18 += 1
        else:
            self.b19 += 1


def time_wait(job: Job) -> None:
    """``BrokerConfig.timing``: ``job`` started (``started`` set): count its queue wait."""
    func = job.function
    hist = func.wait_times
    if hist is None:
        hist = func.wait_times = Histogram()
    hist.observe(job.started - job.submitted)


def time_run(job: Job, now: float) -> None:
    """``BrokerConfig.timing``: ``job`` stopped running at ``now`` (complete or failed)."""
    func = job.function
    hist = func.run_times
    if hist is None:
        hist = func.run_times = Histogram()
    hist.observe(now - job.started)
