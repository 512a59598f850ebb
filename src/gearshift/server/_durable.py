"""Durable background jobs: the bridge between the broker's store hooks and a Store.

The broker calls :meth:`DurableStore.add` for every new background job and holds its
JOB_CREATED back; the group committer writes adds, removes and retry counts that arrive
close together in one transaction, and only when that transaction has committed does
the broker acknowledge the job (:meth:`Broker.persisted`). A failed write answers the
submitter ``ERROR QUEUE_ERROR`` and the job is forgotten, so nothing is half-stored.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from gearshift.broker import Broker, Job, Lookup, Outcome, PagedRow, Schedule
from gearshift.broker._model import Ack
from gearshift.server._cluster import LeaseKeeper, restore_jobs
from gearshift.server._config import ServerConfig, StartupError

if TYPE_CHECKING:
    from gearshift.store import (
        FencedError,
        GroupCommitter,
        Store,
        StoredJob,
        StoredOutcome,
        StoreError,
    )

log = logging.getLogger("gearshift.server")

T = TypeVar("T")

#: Jobs per read when a deep queue's store is replayed at startup.
REPLAY_CHUNK = 10_000
#: Backoff of a page read that failed (the store is down): it is retried until it works.
READ_RETRY_S = (0.05, 2.0)


class DurableStore:
    """Implements the broker's StoreHooks on top of a Store and a GroupCommitter."""

    def __init__(self, store: Store, committer: GroupCommitter, broker: Broker,
                 on_change: Callable[[], None]) -> None:
        from gearshift.store import StoredJob

        self.store = store
        self.committer = committer
        committer.on_added = self._added
        self.broker = broker
        self.on_change = on_change
        self._stored_job = StoredJob  # (imported here: the store package loads lazily)
        #: renews the lease of a store shared by several servers (None otherwise)
        self.keeper: LeaseKeeper | None = None
        #: page reads and lookups of deep queues under way
        self._reads: set[asyncio.Task[None]] = set()

    def add(self, job: Job) -> None:
        # The committer answers once per batch (_added), not with a future per job.
        self.committer.add_quiet(self._stored_job(
            job.handle, job.function.name, job.unique, job.data, job.priority,
            math.ceil(job.when), job.reducer, job.retries, job.submitted), job)

    def _added(self, jobs: list[Job], error: StoreError | None) -> None:
        """A batch's transaction ended: acknowledge (or refuse) its jobs, in order."""
        broker = self.broker
        if error is None:
            for job in jobs:
                broker.persisted(job)
        else:
            log.error("store write of %d jobs failed: %s", len(jobs), error)
            message = f"persistent store write failed: {error}"
            for job in jobs:
                broker.persist_failed(job, message)
        self.on_change()

    def remove(self, job: Job) -> None:
        self.committer.remove(job.handle)

    def update(self, job: Job) -> None:
        # Whole seconds in the store: a retry's backoff rounds up after a restart.
        self.committer.set_retries(job.handle, job.retries, math.ceil(job.when))

    def put_outcome(self, outcome: Outcome) -> None:
        self.committer.put_outcome(outcome.handle, to_stored_outcome(outcome))

    def drop_outcome(self, handle: bytes) -> None:
        self.committer.put_outcome(handle, None)

    def put_schedule(self, schedule: Schedule, ack: Ack | None = None) -> None:
        from gearshift.store import StoredSchedule

        self.committer.put_schedule(schedule.key, StoredSchedule(
            schedule.key, schedule.function, schedule.unique, schedule.cron, schedule.data,
            schedule.priority, schedule.last_fired))
        if ack is not None:
            # The submitter's reply waits for the transaction that holds this write.
            key = schedule.key
            self.committer.barrier().add_done_callback(
                lambda fut: self._schedule_written(ack, key, fut))

    def _schedule_written(self, ack: Ack, key: bytes, future: asyncio.Future[None]) -> None:
        exc = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if exc is not None:
            log.error("store write of schedule %r failed: %s", key, exc)
        self.broker.schedule_written(
            ack, key, None if exc is None else f"persistent store write failed: {exc}")
        self.on_change()

    def drop_schedule(self, key: bytes) -> None:
        self.committer.put_schedule(key, None)

    def put_flow(self, function: bytes, setting: str) -> None:
        self.committer.put_flow(function, setting)

    def drop_flow(self, function: bytes) -> None:
        self.committer.put_flow(function, None)

    # ------------------------------------------------------------ deep queues (PageHooks)

    def load_page(self, function: bytes, priority: int, after: int, start: bytes,
                  limit: int) -> None:
        self._spawn(self._page(function, priority, after, start, limit))

    def lookup(self, handles: list[bytes], request: Lookup) -> None:
        self._spawn(self._lookup(handles, request))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _page(self, function: bytes, priority: int, after: int, start: bytes,
                    limit: int) -> None:
        rows = await self._read("a page of a deep queue", lambda: self.store.load_page(
            function, priority, after, limit, start))
        self.broker.paged(function, priority, rows)  # (a JobRow is a PagedRow)
        self.on_change()

    async def _lookup(self, handles: list[bytes], request: Lookup) -> None:
        jobs = await self._read("spilled jobs", lambda: self.store.load_jobs(handles))
        self.broker.looked_up(request, [paged_row(0, j) for j in jobs])
        self.on_change()

    async def _read(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, retried with backoff until the store answers: the broker waits
        for exactly one answer (closing the server cancels the wait)."""
        from gearshift.store import StoreError

        delay = READ_RETRY_S[0]
        while True:
            try:
                return await call()
            except StoreError as exc:
                log.error("reading %s failed (retrying in %.2fs): %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, READ_RETRY_S[1])

    async def close(self) -> None:
        for task in list(self._reads):
            task.cancel()
        await self.committer.close()
        if self.keeper is not None:
            await self.keeper.close()
        await self.store.close()


async def open_durable(config: ServerConfig, broker: Broker, on_change: Callable[[], None],
                       on_fenced: Callable[[FencedError], None] | None = None
                       ) -> DurableStore:
    """Open the configured store, claim this server's share of it, replay that into the
    broker, and hook it up.

    Raises:
        StartupError: the store cannot be opened (unreachable database, bad URL, an
            SQLite file another server holds...).
    """
    from gearshift.store import GroupCommitter, StoreError, open_store
    from gearshift.store._open import require_driver

    server_id = config.server_id or f"{socket.gethostname()}:{config.port}"
    try:
        os.makedirs(config.data_dir, exist_ok=True)
        require_driver(config.store)
        store = open_store(config.store, data_dir=config.data_dir)
        await store.open()
        claimed_at = broker.clock()
        paging = config.queue_memory > 0 and store.pageable
        try:
            live = await store.claim(server_id, config.lease)
            boot = await store.boot()
            # With deep queues the jobs are replayed in chunks below, not read whole.
            stored = [] if paging else await store.load()
            outcomes = await store.load_outcomes()
            schedules = await store.load_schedules()
            flows = await store.load_flows()
        except BaseException:
            await store.close()
            raise
    except (StoreError, OSError, ValueError) as exc:
        raise StartupError(f"cannot open store {config.store!r}: {exc}") from exc
    if store.shared:
        broker.server_id = server_id
        log.info("server id %r holds a %.1fs lease on %s", server_id, config.lease,
                 store.description)
        if not config.server_id and not config.port:
            log.warning("port 0 gives every such server the id %r: give each one a "
                        "--server-id when several share %s", server_id, store.description)
        if live:
            log.warning("the lease of server id %r was still live: a restart right after "
                        "a crash, or another process with the same --server-id (now "
                        "fenced off)", server_id)
    # Handles embed the boot counter so a handle is never reused across restarts.
    broker.set_handle_prefix(f"{config.job_handle_prefix}:{boot}.".encode())
    durable = DurableStore(store, GroupCommitter(store, on_fenced=on_fenced), broker,
                           on_change)
    broker.store = durable  # restoring may delete expired outcomes
    for name, setting in flows.items():  # pauses and limits first: before any job runs
        try:
            broker.restore_flow(name, setting)
        except ValueError as exc:
            log.error("stored flow setting of %r is unusable and was skipped: %s", name, exc)
    if flows:
        log.info("restored admin flow settings of %d functions", len(flows))
    await replay_jobs(durable, stored, config.queue_memory)
    kept = sum(broker.restore_outcome(from_stored_outcome(o)) for o in outcomes)
    if outcomes:
        log.info("restored %d kept outcomes and dead letters (%d expired)", kept,
                 len(outcomes) - kept)
    for sched in schedules:
        try:
            broker.restore_schedule(Schedule(sched.key, sched.function, sched.unique,
                                             sched.cron, sched.data, sched.priority,
                                             sched.last_fired))
        except ValueError as exc:
            log.error("stored schedule %r is unusable and was skipped: %s", sched.key, exc)
    if store.shared and on_fenced is not None:
        durable.keeper = LeaseKeeper(store, broker, config.lease, on_change, on_fenced)
        durable.keeper.start(claimed_at)
    return durable


async def replay_jobs(durable: DurableStore, stored: list[StoredJob], budget: int) -> None:
    """Queue the stored jobs again: ``stored`` as read, or with deep queues
    (``--queue-memory``, a store that can page) the store in chunks (each queue's head
    stays in memory, the rest spilled) before pages are read."""
    broker = durable.broker
    replayed = len(stored)
    paging = budget > 0 and durable.store.pageable
    if paging:
        broker.enable_paging(budget)  # pages are read once replayed
        log.info("deep queues: about %d bytes of jobs in memory, pages of %d jobs",
                 budget, broker.page_jobs)
    elif budget:
        log.warning("--queue-memory is ignored: %s cannot page its queue, so every queued "
                    "job stays in memory", durable.store.description)
    if paging:
        replayed = await replay_windows(durable.store, broker)
        broker.start_paging(durable)
    else:
        restore_jobs(broker, stored)
    if replayed:
        log.warning("replayed %d stored background jobs", replayed)
        spill = broker.spill
        if spill is not None and spill.count:
            log.info("%d of them stay in the store until workers need them", spill.count)


async def replay_windows(store: Store, broker: Broker) -> int:
    """Replay the store in chunks, with positions: the broker keeps each queue's head
    and leaves the rest spilled (deep queues). Returns the jobs replayed.

    Raises:
        StartupError: the store failed while being read.
    """
    from gearshift.store import StoreError

    replayed = after = 0
    try:
        while chunk := await store.load_chunk(after, REPLAY_CHUNK):
            for position, handle, function, unique, data, priority, when, reducer, \
                    retries, submitted in chunk:
                broker.restore(handle, function, unique, data, priority, when, reducer,
                               retries, submitted, position)
            replayed += len(chunk)
            after = chunk[-1][0]
    except StoreError as exc:
        await store.close()
        raise StartupError(f"cannot replay {store.description}: {exc}") from exc
    return replayed


def paged_row(position: int, job: StoredJob) -> PagedRow:
    """A stored job as the broker takes it back (``Broker.paged``, ``looked_up``)."""
    return (position, job.handle, job.function, job.unique, job.data, job.priority, job.when,
            job.reducer, job.retries, job.submitted)


def to_stored_outcome(outcome: Outcome) -> StoredOutcome:
    from gearshift.store import StoredOutcome

    return StoredOutcome(
        outcome.handle, outcome.function, outcome.unique, outcome.state, outcome.result,
        outcome.attempts, outcome.submitted, outcome.started, outcome.ended, outcome.dead,
        outcome.data, outcome.priority, outcome.reducer, list(outcome.reasons))


def from_stored_outcome(stored: StoredOutcome) -> Outcome:
    return Outcome(
        stored.handle, stored.function, stored.unique, stored.state, stored.result,
        stored.attempts, stored.submitted, stored.started, stored.ended, stored.dead,
        stored.data, stored.priority, stored.reducer, list(stored.reasons))
