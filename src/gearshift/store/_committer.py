"""Group commit: many submissions and completions, one transaction.

A durable store pays for a commit (an fsync, a network round trip) per transaction, not
per row. The committer keeps at most one :meth:`Store.apply` in flight; everything queued
while it runs becomes the next batch. Under load batches grow by themselves, so
throughput follows the database's commit rate times the batch size, while a lone job is
still written at once (no timer, no added latency).

Resource handling: the committer owns one background task, started on demand and ended
when the queue is empty; :meth:`close` flushes and waits for it.

Error handling: a failed batch fails the futures of its adds with the :class:`StoreError`
(the server answers ``ERROR QUEUE_ERROR``); its removes, retry counts, outcomes,
schedules and flow settings are kept and retried with the next batch, after a backoff
that doubles up to ``max_backoff``. A :class:`FencedError` (another server adopted this
one's jobs) is final: everything queued fails with it, the committer closes, and
``on_fenced`` is told.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gearshift.store._base import (
    Batch,
    FencedError,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
)

log = logging.getLogger("gearshift.store")

#: First pause after a failed write; doubles per consecutive failure.
MIN_BACKOFF_S = 0.05
#: Longest pause between attempts while the store is down (bounds how long a submitter
#: waits for its ``QUEUE_ERROR``).
MAX_BACKOFF_S = 2.0


class GroupCommitter:
    """Queues store operations from the event loop and writes them in group commits.

    Example::

        committer = GroupCommitter(store)
        await committer.add(job)        # resolves once the job's transaction committed
        committer.remove(job.handle)    # fire and forget
        await committer.close()
    """

    def __init__(self, store: Store, *, min_backoff: float = MIN_BACKOFF_S,
                 max_backoff: float = MAX_BACKOFF_S,
                 on_fenced: Callable[[FencedError], None] | None = None,
                 on_added: Callable[[list[Any], StoreError | None], None] | None = None
                 ) -> None:
        self.store = store
        self.on_fenced = on_fenced
        #: told once per batch, with the tokens of its :meth:`add_quiet` jobs: None when
        #: they are committed, else the error (see add_quiet)
        self.on_added = on_added
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._pending = Batch()
        self._waiters: list[asyncio.Future[None]] = []
        self._tokens: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._backoff = 0.0
        self._closed = False
        self._fenced: FencedError | None = None  # why the committer closed, if fenced
        #: Statistics, for benchmarks, ``repr`` and ``/metrics`` (one update per batch).
        self.commits = 0
        self.failures = 0
        self.largest_batch = 0
        self.commit_seconds = 0.0  # time spent in successful apply() calls
        self.committed_items = 0  # adds and removes in the successful batches

    @property
    def reachable(self) -> bool:
        """Whether the last write succeeded (no backoff under way): ``/readyz``."""
        return self._backoff == 0.0

    # ------------------------------------------------------------- operations

    def add(self, job: StoredJob) -> asyncio.Future[None]:
        """Queue ``job``; the future resolves when it is committed (or fails: StoreError)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(self._fenced or StoreError(
                f"{self.store.description}: committer closed"))
            return future
        self._pending.adds.append(job)
        self._waiters.append(future)
        self._kick()
        return future

    def add_quiet(self, job: StoredJob, token: Any) -> None:
        """Queue ``job`` without a future: ``on_added([token, ...], error)`` is called
        once for its whole batch, right after the batch's transaction ended, in the
        order the jobs were added. A future and a callback per job were a third of the
        server's own time when filling a queue (docs/benchmarks.md, issue 20)."""
        if self._closed:
            error = self._fenced or StoreError(f"{self.store.description}: committer closed")
            self._tell([token], error)
            return
        self._pending.adds.append(job)
        self._tokens.append(token)
        self._kick()

    def _tell(self, tokens: list[Any], error: StoreError | None) -> None:
        if tokens and self.on_added is not None:
            try:
                self.on_added(tokens, error)
            except Exception:  # the batch's outcome stands whatever a listener does
                log.exception("on_added failed")

    def remove(self, handle: bytes) -> None:
        """Queue the removal of a finished, failed or cancelled job."""
        self._pending.removes.append(handle)
        self._kick()

    def set_retries(self, handle: bytes, count: int, when: int | None = None) -> None:
        """Queue a new attempt count (and, for a retry with backoff, a new run-at time)
        for a stored job."""
        self._pending.retries[handle] = count
        if when is not None:
            self._pending.when[handle] = when
        self._kick()

    def barrier(self) -> asyncio.Future[None]:
        """A future that resolves when everything queued so far is committed (or fails
        with the StoreError of its batch): how a non-job write is acknowledged only
        once it is durable."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(self._fenced or StoreError(
                f"{self.store.description}: committer closed"))
            return future
        self._waiters.append(future)
        self._kick()
        return future

    def put_outcome(self, handle: bytes, outcome: StoredOutcome | None) -> None:
        """Queue storing (or, with None, deleting) a job's outcome or dead letter."""
        self._pending.outcomes[handle] = outcome
        self._kick()

    def put_schedule(self, key: bytes, schedule: StoredSchedule | None) -> None:
        """Queue storing (or, with None, deleting) a schedule."""
        self._pending.schedules[key] = schedule
        self._kick()

    def put_flow(self, function: bytes, setting: str | None) -> None:
        """Queue storing (or, with None, deleting) a function's admin flow setting."""
        self._pending.flows[function] = setting
        self._kick()

    async def flush(self) -> None:
        """Wait until everything queued so far has been written (or has failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Flush, then refuse new adds. Does not close the store (its owner does)."""
        self._closed = True
        await self.flush()

    # ---------------------------------------------------------------- machinery

    def _kick(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="gearshift-group-commit")

    async def _drain(self) -> None:
        try:
            while self._pending or self._waiters:
                batch, waiters = self._pending, self._waiters
                if not batch:
                    # Only barriers wait: everything before them is already written.
                    self._waiters = []
                    for future in waiters:
                        if not future.done():
                            future.set_result(None)
                    continue
                if self._backoff:
                    await asyncio.sleep(self._backoff)
                    batch, waiters = self._pending, self._waiters
                tokens = self._tokens
                self._pending, self._waiters, self._tokens = Batch(), [], []
                await self._commit(batch, waiters, tokens)
                if self._closed and self._backoff and self._pending:
                    # Shutting down with the store down: do not retry forever.
                    self._fail_all(StoreError(f"{self.store.description}: closed while down"))
                    break
        finally:
            self._task = None

    async def _commit(self, batch: Batch, waiters: list[asyncio.Future[None]],
                      tokens: list[Any]) -> None:
        started = time.perf_counter()
        try:
            await self.store.apply(batch)
        except FencedError as exc:
            # Nothing more may be written: the jobs are someone else's now.
            self._closed = True
            self._fenced = exc
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
            self._tell(tokens, exc)
            self._fail_all(exc)
            if self.on_fenced is not None:
                self.on_fenced(exc)
        except StoreError as exc:
            self._failed(batch, waiters, exc)
            self._tell(tokens, exc)
        except Exception as exc:  # a driver bug must not strand the waiters
            log.exception("unexpected error from %r", self.store)
            error = StoreError(f"{self.store.description}: {exc}")
            self._failed(batch, waiters, error)
            self._tell(tokens, error)
        except BaseException as exc:
            for future in waiters:
                if not future.done():
                    future.cancel()
            self._tell(tokens, StoreError(f"{self.store.description}: write interrupted "
                                          f"({type(exc).__name__})"))
            raise
        else:
            self.commits += 1
            self.commit_seconds += time.perf_counter() - started
            items = len(batch.adds) + len(batch.removes)
            self.committed_items += items
            self.largest_batch = max(self.largest_batch, items)
            self._backoff = 0.0
            self._tell(tokens, None)
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def _failed(self, batch: Batch, waiters: list[asyncio.Future[None]],
                exc: StoreError) -> None:
        self.failures += 1
        self._backoff = min(self.max_backoff, max(self.min_backoff, self._backoff * 2))
        log.error("store write of %d adds, %d removes failed (retrying in %.2fs): %s",
                  len(batch.adds), len(batch.removes), self._backoff, exc)
        for future in waiters:
            if not future.done():
                future.set_exception(exc)
        # Removes and retry counts of jobs that were never stored are harmless to
        # repeat; dropping them would replay finished jobs after a restart.
        failed_adds = {job.handle for job in batch.adds}
        self._pending.removes[:0] = [h for h in batch.removes if h not in failed_adds]
        pending = self._pending
        for handle, count in batch.retries.items():
            if handle not in failed_adds:
                pending.retries.setdefault(handle, count)
        for handle, when in batch.when.items():
            if handle not in failed_adds:
                pending.when.setdefault(handle, when)
        # Outcome and schedule writes queued since are newer: they win.
        for handle, outcome in batch.outcomes.items():
            pending.outcomes.setdefault(handle, outcome)
        for key, schedule in batch.schedules.items():
            pending.schedules.setdefault(key, schedule)
        for name, setting in batch.flows.items():
            pending.flows.setdefault(name, setting)

    def _fail_all(self, exc: StoreError) -> None:
        for future in self._waiters:
            if not future.done():
                future.set_exception(exc)
        tokens = self._tokens
        self._pending, self._waiters, self._tokens = Batch(), [], []
        self._tell(tokens, exc)

    def __repr__(self) -> str:
        return (f"<GroupCommitter {self.store.description}: {len(self._pending.adds)} adds "
                f"queued, {self.commits} commits, largest batch {self.largest_batch}>")
