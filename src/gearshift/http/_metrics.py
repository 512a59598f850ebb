"""``/metrics``: the broker's state and counters in Prometheus' text format.

A custom collector reads what the broker keeps anyway -- each function's queue counts,
running count and workers, its job counters (plain attribute increments where a job
starts or ends: ``Function.submitted`` and the rest, broker/_model.py), the connection
table, the store's group-commit statistics -- when Prometheus scrapes, and at no other
time. Nothing is counted per packet for the sake of metrics, so the Gearman port costs
the same whether or not anyone scrapes.

Not provided (docs/operations.md): queue-wait and run-time histograms; foreground jobs
carry no timestamps, and stamping every job would be per-job clock reads.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from gearshift._build import build_name
from gearshift._version import __version__
from gearshift.broker._model import PRIORITY_NAMES

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


class GearshiftCollector(Collector):
    """Yields every gearshift metric from ``server``'s state at scrape time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        yield from self._functions()
        yield from self._server()
        yield from self._store()

    def _functions(self) -> Iterator[Metric]:
        broker = self.server.broker
        functions = list(broker.functions.values())
        queued = GaugeMetricFamily("gearshift_jobs_queued",
                                   "Jobs waiting for a worker, per priority.",
                                   labels=["function", "priority"])
        scheduled = GaugeMetricFamily(
            "gearshift_jobs_scheduled",
            "Jobs waiting for their time (SUBMIT_JOB_EPOCH, retry backoff).",
            labels=["function"])
        running = GaugeMetricFamily("gearshift_jobs_running", "Jobs a worker is running.",
                                    labels=["function"])
        workers = GaugeMetricFamily("gearshift_function_workers",
                                    "Connected workers that registered the function.",
                                    labels=["function"])
        counters = [(attr, CounterMetricFamily(name, text, labels=["function"]))
                    for attr, name, text in _COUNTERS]
        for func in functions:
            name = _name(func.name)
            for priority, label in enumerate(PRIORITY_NAMES):
                queued.add_metric([name, label], func.queued[priority])
            scheduled.add_metric([name], func.scheduled)
            running.add_metric([name], func.running)
            workers.add_metric([name], len(func.workers))
            for attr, family in counters:
                family.add_metric([name], getattr(func, attr))
        dead_now = Counter(o.function for o in broker.outcomes.dead.values())
        dead = GaugeMetricFamily("gearshift_dead_letters", "Dead letters kept now.",
                                 labels=["function"])
        for function, count in dead_now.items():
            dead.add_metric([_name(function)], count)
        yield from (queued, scheduled, running, workers)
        yield from (family for _, family in counters)
        yield dead

    def _server(self) -> Iterator[Metric]:
        server = self.server
        peers = list(server.broker.peers.values())
        registered = sum(1 for peer in peers if peer.functions)
        yield GaugeMetricFamily("gearshift_connections",
                                "Open Gearman connections (HTTP submissions included).",
                                value=len(peers))
        yield GaugeMetricFamily("gearshift_workers",
                                "Connections that registered at least one function.",
                                value=registered)
        yield GaugeMetricFamily("gearshift_clients",
                                "Connections that registered no function.",
                                value=len(peers) - registered)
        yield GaugeMetricFamily("gearshift_jobs", "Live jobs (queued, scheduled, running).",
                                value=len(server.broker.jobs))
        yield GaugeMetricFamily("gearshift_outcomes_kept",
                                "Outcomes and dead letters kept (--keep-results).",
                                value=server.broker.outcomes.count)
        yield GaugeMetricFamily("gearshift_uptime_seconds", "Seconds since the server started.",
                                value=time.time() - self.started)
        yield GaugeMetricFamily("gearshift_start_time_seconds",
                                "When the server started (unix seconds).", value=self.started)
        info = InfoMetricFamily("gearshift_build", "The running gearshift.")
        info.add_metric([], {"version": __version__, "build": build_name()})
        yield info

    def _store(self) -> Iterator[Metric]:
        durable = self.server.durable
        if durable is None:
            return
        committer = durable.committer
        labels = ["store"]
        store = [durable.store.description]
        latency = SummaryMetricFamily("gearshift_store_commit_seconds",
                                      "Time of successful group commits.", labels=labels)
        latency.add_metric(store, committer.commits, committer.commit_seconds)
        size = SummaryMetricFamily("gearshift_store_commit_batch_size",
                                   "Adds and removes per successful group commit.",
                                   labels=labels)
        size.add_metric(store, committer.commits, committer.committed_items)
        errors = CounterMetricFamily("gearshift_store_errors", "Failed store writes.",
                                     labels=labels)
        errors.add_metric(store, committer.failures)
        largest = GaugeMetricFamily("gearshift_store_largest_batch",
                                    "Largest group commit so far.", labels=labels)
        largest.add_metric(store, committer.largest_batch)
        up = GaugeMetricFamily("gearshift_store_up",
                               "1 when the last store write succeeded.", labels=labels)
        up.add_metric(store, 1 if committer.reachable else 0)
        yield from (latency, size, errors, largest, up)


class Metrics:
    """The registry ``/metrics`` renders: gearshift's collector and the process's."""

    def __init__(self, server: Server) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GearshiftCollector(server))
        self.registry.register(ProcessCollector(registry=None))

    def render(self) -> bytes:
        return generate_latest(self.registry)
