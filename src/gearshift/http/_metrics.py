"""``/metrics``: the broker's state and counters in Prometheus' text format.

A custom collector reports what the broker keeps anyway -- each function's queue counts,
running count and workers, its job counters (plain attribute increments where a job
starts or ends: ``Function.submitted`` and the rest, broker/_model.py), the connection
table, the store's group-commit statistics -- copied when Prometheus scrapes, and at no
other time (:class:`Snapshot`). Nothing is counted per packet for the sake of metrics,
so the Gearman port costs the same whether or not anyone scrapes.

Not provided (docs/operations.md): queue-wait and run-time histograms; foreground jobs
carry no timestamps, and stamping every job would be per-job clock reads.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gearshift._build import build_name
from gearshift._version import __version__
from gearshift.broker._model import PRIORITY_NAMES
from gearshift.broker._timing import TIME_BUCKETS, Histogram

if TYPE_CHECKING:
    from gearshift.server._server import Server

#: Per-function job counters: (attribute of Function, metric name, help).
_COUNTERS = (
    ("submitted", "gearshift_jobs_submitted", "New jobs (coalesced submissions excluded)."),
    ("completed", "gearshift_jobs_completed", "Jobs that completed (WORK_COMPLETE)."),
    ("failed", "gearshift_jobs_failed",
     "Jobs that ended failed (WORK_FAIL/WORK_EXCEPTION, retries exhausted, -j limit)."),
    ("retried", "gearshift_jobs_retried",
     "Failed or lost attempts that were run again (retry policy, lost worker)."),
    ("dead", "gearshift_jobs_dead", "Background jobs that became dead letters."),
)


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The numbers one scrape reports, copied from the broker on the event loop.

    Copying is the only part done on the loop (about 0.5 us per function); building the
    metric families and the text, ~250 us per function with prometheus_client, runs in a
    thread (:meth:`Metrics.render`), so a scrape of a server with a thousand functions
    does not stall the Gearman port for a quarter of a second.
    """

    #: per function: name, queued high/normal/low, scheduled, running, workers, then
    #: the counters in _COUNTERS' order, then paused and held (flow control, 0/1)
    functions: list[tuple[Any, ...]]
    dead: dict[str, int]
    #: per function with jobs timed: name, then (bucket counts, sum) of the queue-wait
    #: and of the run-time histogram, each None until a job was timed
    timings: list[tuple[bytes, tuple[list[int], float] | None,
                        tuple[list[int], float] | None]]
    connections: int
    workers: int
    jobs: int
    outcomes: int
    started: float
    store: tuple[str, int, float, int, int, int, bool] | None

    @classmethod
    def take(cls, server: Server, started: float) -> Snapshot:
        broker = server.broker
        # (queued counts include jobs of deep queues that are only in the store)
        functions = [(f.name, f.depth(0), f.depth(1), f.depth(2), f.scheduled, f.running,
                      len(f.workers), f.submitted, f.completed, f.failed, f.retried, f.dead,
                      int(f.flow is not None and f.flow.paused), int(f.blocked))
                     for f in broker.functions.values()]
        timings = [(f.name, _copy(f.wait_times), _copy(f.run_times))
                   for f in broker.functions.values()
                   if f.wait_times is not None or f.run_times is not None]
        dead = Counter(o.function for o in broker.outcomes.dead.values())
        registered = sum(1 for peer in broker.peers.values() if peer.functions)
        store = None
        if server.durable is not None:
            c = server.durable.committer
            store = (server.durable.store.description, c.commits, c.commit_seconds,
                     c.committed_items, c.failures, c.largest_batch, c.reachable)
        return cls(functions, {_name(k): v for k, v in dead.items()}, timings,
                   len(broker.peers),
                   registered, len(broker.jobs), broker.outcomes.count, started, store)


def _copy(hist: Histogram | None) -> tuple[list[int], float] | None:
    return None if hist is None else (list(hist.counts), hist.total)


def _histogram(family: HistogramMetricFamily, name: str,
               hist: tuple[list[int], float] | None) -> None:
    """Add one function's histogram (bucket counts -> Prometheus' cumulative ones)."""
    if hist is None:
        return
    counts, total = hist
    buckets: list[tuple[str, float]] = []
    running = 0
    for bound, count in zip((*map(floatToGoString, TIME_BUCKETS), "+Inf"), counts,
                            strict=True):
        running += count
        buckets.append((bound, running))
    family.add_metric([name], buckets, total)


class SnapshotCollector(Collector):
    """Yields every gearshift metric from one :class:`Snapshot` (any thread)."""

    def __init__(self, snapshot: Snapshot, process: Collector) -> None:
        self.snapshot = snapshot
        self.process = process

    def collect(self) -> Iterator[Metric]:
        yield from self._functions()
        yield from self._server()
        yield from self._store()
        yield from self.process.collect()

    def _functions(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily("gearshift_jobs_queued",
                                   "Jobs waiting for a worker, per priority.",
                                   labels=["function", "priority"])
        gauges = [GaugeMetricFamily(name, text, labels=["function"]) for name, text in (
            ("gearshift_jobs_scheduled",
             "Jobs waiting for their time (SUBMIT_JOB_EPOCH, retry backoff)."),
            ("gearshift_jobs_running", "Jobs a worker is running."),
            ("gearshift_function_workers", "Connected workers that registered the function."),
        )]
        counters = [CounterMetricFamily(name, text, labels=["function"])
                    for _, name, text in _COUNTERS]
        paused = GaugeMetricFamily("gearshift_function_paused",
                                   "1 while the function is paused (admin pause, or a "
                                   "concurrency limit of 0).", labels=["function"])
        held = GaugeMetricFamily("gearshift_function_held",
                                 "1 while a flow limit (pause, concurrency, rate) holds the "
                                 "function's queued jobs back.", labels=["function"])
        for row in self.snapshot.functions:
            name = _name(row[0])
            paused.add_metric([name], row[-2])
            held.add_metric([name], row[-1])
            for priority, label in enumerate(PRIORITY_NAMES):
                queued.add_metric([name, label], row[1 + priority])
            for i, family in enumerate(gauges):
                family.add_metric([name], row[4 + i])
            for i, counter in enumerate(counters):
                counter.add_metric([name], row[7 + i])
        dead = GaugeMetricFamily("gearshift_dead_letters", "Dead letters kept now.",
                                 labels=["function"])
        for function, count in self.snapshot.dead.items():
            dead.add_metric([function], count)
        waits = HistogramMetricFamily(
            "gearshift_job_queue_wait_seconds",
            "Seconds from a job's submission to its (latest) start.", labels=["function"])
        runs = HistogramMetricFamily(
            "gearshift_job_run_seconds",
            "Seconds a job ran until WORK_COMPLETE, WORK_FAIL or WORK_EXCEPTION.",
            labels=["function"])
        for raw, wait, run in self.snapshot.timings:
            _histogram(waits, _name(raw), wait)
            _histogram(runs, _name(raw), run)
        yield queued
        yield waits
        yield runs
        yield paused
        yield held
        yield from gauges
        yield from counters
        yield dead

    def _server(self) -> Iterator[Metric]:
        snap = self.snapshot
        yield GaugeMetricFamily("gearshift_connections",
                                "Open Gearman connections (HTTP submissions included).",
                                value=snap.connections)
        yield GaugeMetricFamily("gearshift_workers",
                                "Connections that registered at least one function.",
                                value=snap.workers)
        yield GaugeMetricFamily("gearshift_clients",
                                "Connections that registered no function.",
                                value=snap.connections - snap.workers)
        yield GaugeMetricFamily("gearshift_jobs", "Live jobs (queued, scheduled, running).",
                                value=snap.jobs)
        yield GaugeMetricFamily("gearshift_outcomes_kept",
                                "Outcomes and dead letters kept (--keep-results).",
                                value=snap.outcomes)
        yield GaugeMetricFamily("gearshift_uptime_seconds", "Seconds since the server started.",
                                value=time.time() - snap.started)
        yield GaugeMetricFamily("gearshift_start_time_seconds",
                                "When the server started (unix seconds).", value=snap.started)
        info = InfoMetricFamily("gearshift_build", "The running gearshift.")
        info.add_metric([], {"version": __version__, "build": build_name()})
        yield info

    def _store(self) -> Iterator[Metric]:
        if self.snapshot.store is None:
            return
        description, commits, seconds, items, failures, largest, reachable = \
            self.snapshot.store
        labels, store = ["store"], [description]
        latency = SummaryMetricFamily("gearshift_store_commit_seconds",
                                      "Time of successful group commits.", labels=labels)
        latency.add_metric(store, commits, seconds)
        size = SummaryMetricFamily("gearshift_store_commit_batch_size",
                                   "Adds and removes per successful group commit.",
                                   labels=labels)
        size.add_metric(store, commits, items)
        errors = CounterMetricFamily("gearshift_store_errors", "Failed store writes.",
                                     labels=labels)
        errors.add_metric(store, failures)
        biggest = GaugeMetricFamily("gearshift_store_largest_batch",
                                    "Largest group commit so far.", labels=labels)
        biggest.add_metric(store, largest)
        up = GaugeMetricFamily("gearshift_store_up",
                               "1 when the last store write succeeded.", labels=labels)
        up.add_metric(store, 1 if reachable else 0)
        yield from (latency, size, errors, biggest, up)


class Metrics:
    """What ``/metrics`` renders: a snapshot taken on the loop, formatted in a thread,
    with prometheus_client's process metrics (CPU, memory, descriptors)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.started = time.time()
        self.process = ProcessCollector(registry=None)

    async def render(self) -> bytes:
        snapshot = Snapshot.take(self.server, self.started)
        return await asyncio.to_thread(
            generate_latest, cast(CollectorRegistry, SnapshotCollector(snapshot, self.process)))
