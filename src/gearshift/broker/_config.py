"""The broker's settings and what it asks of durable storage.

Kept out of the dispatcher so the server, the admin commands and the tests can build
them without importing the dispatch rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gearshift._version import __version__
from gearshift.broker._access import LOOPBACK, Network
from gearshift.broker._flow import FlowRules
from gearshift.broker._model import Ack, Job
from gearshift.broker._outcomes import Outcome
from gearshift.broker._queue_limits import QueueLimits
from gearshift.broker._retry import RetryPolicies
from gearshift.broker._schedules import Schedule
from gearshift.broker._spill import Lookup


class StoreHooks(Protocol):
    """What the broker asks of durable storage; the I/O shell implements it.

    ``add`` must eventually be answered by :meth:`Broker.persisted` or
    :meth:`Broker.persist_failed`; everything else is fire-and-forget, ordered after
    the add by the group committer (so a job's removal and its outcome, queued
    together, are written in one transaction).
    """

    def add(self, job: Job) -> None: ...
    def remove(self, job: Job) -> None: ...
    def update(self, job: Job) -> None:
        """Write the job's failed-attempt count and run-at time (a retry)."""
    def put_outcome(self, outcome: Outcome) -> None: ...
    def drop_outcome(self, handle: bytes) -> None: ...
    def put_schedule(self, schedule: Schedule, ack: Ack | None = None) -> None:
        """Write a schedule; with ``ack``, answer :meth:`Broker.schedule_written`."""
    def drop_schedule(self, key: bytes) -> None: ...
    def put_flow(self, function: bytes, setting: str) -> None:
        """Write a function's admin flow setting (``FlowSetting.text``), replacing any."""
    def drop_flow(self, function: bytes) -> None: ...


class PageHooks(Protocol):
    """What a deep queue (``--queue-memory``) asks of a store that can page; the I/O
    shell reads asynchronously and answers with :meth:`Broker.paged` and
    :meth:`Broker.looked_up` (one answer per request, retrying a failed read)."""

    def load_page(self, function: bytes, priority: int, after: int, start: bytes,
                  limit: int) -> None:
        """Read up to ``limit`` jobs of ``function`` at ``priority`` after store
        position ``after`` (and not before the job ``start``, if it names one)."""
    def lookup(self, handles: list[bytes], request: Lookup) -> None:
        """Read the stored jobs among ``handles``."""


@dataclass(slots=True)
class BrokerConfig:
    """Dispatch settings, mostly named after gearmand's options.

    Attributes:
        job_retries: ``-j``: drop a job (WORK_FAIL to its clients) once it has been
            handed out this many times without finishing; 0 = unlimited (gearmand's
            released behaviour). A retry policy, where one applies, takes precedence.
        worker_wakeup: ``-w``: sleeping workers NOOPed per queued job; 0 = all.
        wakeup_timeout: ``--wakeup-timeout``: with ``-w N``, a function whose jobs are
            still queued this many seconds after a wake-up, while some of its workers
            sleep un-woken, NOOPs all of them (a woken worker did not come); 0 = never.
        exceptions: ``--exceptions``: every connection starts with the option on.
        handle_prefix: job handles are ``<prefix><counter>``.
        allow_shutdown: whether the admin ``shutdown`` command is honoured.
        keep_results: ``--keep-results``: seconds a background job's outcome is kept
            after it ended; 0 keeps none (dead letters are kept regardless).
        results_max_bytes / dead_max_bytes: budgets of kept outcomes and of dead
            letters; beyond them the oldest records go first.
        retry: ``--retry`` policies for background jobs.
        max_queue: ``--max-queue`` caps, applied to each function when it is first seen.
        admin_from: ``--admin-from``: networks whose peers may use the admin commands
            that change state (default: loopback).
        max_idle_functions: ``--max-idle-functions``: with this many function records,
            those without jobs, workers or settings are forgotten.
        max_memory: ``--max-memory``: workload bytes of live jobs beyond which new
            submissions get QUEUE_ERROR; 0 = no limit.
        flow: ``--concurrency``, ``--rate`` and ``--weight`` rules, resolved likewise.
        timing: keep each function's queue-wait and run-time histograms
            (``Function.wait_times``/``run_times``); the server turns it on with its
            HTTP listener, whose ``/metrics`` is their only reader. Off, a job pays one
            bool test at its start and end.
    """

    job_retries: int = 0
    worker_wakeup: int = 1
    wakeup_timeout: float = 1.0
    exceptions: bool = False
    handle_prefix: bytes = b"H:gearshift:"
    allow_shutdown: bool = False
    verbose: str = "ERROR"
    version: str = __version__
    pid: int = 0
    keep_results: float = 3600.0
    results_max_bytes: int = 64 << 20
    dead_max_bytes: int = 64 << 20
    retry: RetryPolicies = field(default_factory=RetryPolicies)
    max_queue: QueueLimits = field(default_factory=QueueLimits)
    admin_from: tuple[Network, ...] = LOOPBACK
    max_idle_functions: int = 10_000
    max_memory: int = 0
    flow: FlowRules = field(default_factory=FlowRules)
    timing: bool = False
