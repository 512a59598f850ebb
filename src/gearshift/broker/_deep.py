"""Deep queues in bounded memory (``--queue-memory``, a store that can page).

Each function's queue at each priority keeps its *head* in memory; once the jobs in
memory pass the budget, newly stored jobs of a queue stay in the store only
(*spilled*), and every later job of that queue follows them until the queue has caught
up, so order is kept: FIFO within a function and priority, priorities first, round
robin across functions. Pages are read back ahead of the workers: when fewer than
``page_jobs`` jobs of a priority are left in memory the broker asks the store for the
next ``page_jobs`` (:class:`~gearshift.broker._config.PageHooks`), and the I/O shell
answers with :meth:`DeepQueues.paged`. A function whose head ran dry while a page is
read hands out nothing (it is ``blocked``, like a function at its concurrency limit):
its lower priorities must not jump ahead. No I/O here, as everywhere in the broker.

Only a job that is *committed* is ever spilled (at :meth:`persisted`, or when replayed
at startup), so a spilled job is always in the store; a job in memory stays there while
it runs, is retried, waits for its run-at time or has foreground clients, and those that
come back (a lost worker, a due epoch job) join the in-memory head, ahead of the spilled
tail. What is kept of a spilled job (membership, coalescing) is in :mod:`._spill`; a
unique key that may name a spilled job is confirmed by reading that job back by handle
(:class:`~gearshift.broker._spill.Lookup`) before a submission coalesces onto it, a
GET_STATUS_UNIQUE answers, or a ``cancel job`` acts. Design: docs/architecture.md,
"Deep queues".
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Final

from gearshift.broker._config import BrokerConfig, PageHooks, StoreHooks
from gearshift.broker._lifecycle import CANCELLED, CANCELLED_REASON, JobLifecycle
from gearshift.broker._model import DONE, PENDING, RUNNING, Ack, Function, Job, Pages, Peer
from gearshift.broker._outcomes import Outcome
from gearshift.broker._packets import created_packet, error_packet, packet
from gearshift.broker._spill import (
    CANCEL,
    STATUS_UNIQUE,
    SUBMIT,
    Lookup,
    PagedRow,
    SpillIndex,
)
from gearshift.protocol._spec import ErrorCode, PacketType

P = PacketType

#: What a queued job in memory costs besides its payload bytes (the Job, the payload's
#: and unique's objects, the indexes), for the ``--queue-memory`` budget:
#: benchmarks/memory_bench.py measures 317 bytes with a 64-byte payload and a unique.
JOB_BYTES: Final = 300
#: Jobs per page read back, and the head size below which the next page is read.
MIN_PAGE: Final = 16
MAX_PAGE: Final = 10_000


def page_size(budget: int) -> int:
    """Jobs per page for a ``--queue-memory`` budget: an eighth of what fits."""
    return max(MIN_PAGE, min(MAX_PAGE, budget // JOB_BYTES // 8))


class DeepQueues(JobLifecycle):
    """Spilling jobs to the store, paging them back, and answering for them meanwhile."""

    def __init__(self, config: BrokerConfig | None = None,
                 clock: Callable[[], float] = time.time,
                 store: StoreHooks | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(config, clock, store, rng)
        #: what is kept of spilled jobs (None: deep queues are off, the usual case)
        self.spill: SpillIndex | None = None
        self.pager: PageHooks | None = None
        #: --queue-memory: bytes of jobs in memory beyond which queues spill
        self.queue_memory = 0
        self.page_jobs = MAX_PAGE
        #: foreground clients that joined a spilled job, by its reference
        self._joiners: dict[int, list[Peer]] = {}
        self.pages_read = 0
        self.paged_in = 0

    def enable_paging(self, budget: int, pager: PageHooks | None = None) -> None:
        """Keep about ``budget`` bytes of jobs in memory; the rest stays in the store.
        Pages are read once there is a ``pager`` (:meth:`start_paging`): not while the
        store is being replayed, or a page could pass jobs not replayed yet."""
        self.spill = SpillIndex()
        self.queue_memory = budget
        self.page_jobs = page_size(budget)
        if pager is not None:
            self.start_paging(pager)

    def start_paging(self, pager: PageHooks) -> None:
        """Read pages from now on, beginning with the queues whose head is short."""
        self.pager = pager
        for func in list(self.functions.values()):
            if func.deep:
                for priority in range(3):
                    self._low(func, priority)

    def _fits(self) -> bool:
        jobs = self.jobs
        return jobs.payload_bytes + len(jobs) * JOB_BYTES <= self.queue_memory

    # ------------------------------------------------------------------ spilling

    def _spilled(self, job: Job, position: int) -> bool:
        spill = self.spill
        if spill is None:
            return False
        func = job.function
        prio = job.priority
        pages = func.pages
        if (pages is None or not pages.spilled[prio]) and self._fits():
            return False
        more = job.more
        if more is not None and (more.clients or more.retries or more.reasons
                                 or (more.when and more.when > self.clock())):
            return False  # it stays in memory: clients, a retry, or a time to wait for
        ref = spill.ref(job.handle, True)
        if ref < 0:
            return False
        if pages is None:
            pages = func.pages = Pages()
        if not pages.spilled[prio]:
            # A new run of spilled jobs: its first page starts at this job.
            if position > 0:
                pages.after[prio] = position - 1
            else:
                pages.start[prio] = job.handle
        pages.spilled[prio] += 1
        func.deep += 1
        spill.mark(ref)
        if job.unique:
            spill.add_key(spill.key_hash(func.name, job.unique, job.data), ref)
        if position < 0:  # a live job: it leaves memory
            self.jobs.remove(job)
            if job.unique:
                self._unindex(job)
        job.state = DONE
        self._low(func, prio)
        return True

    def _low(self, func: Function, priority: int) -> None:
        pages = func.pages
        if pages is None or not pages.spilled[priority]:
            return
        queued = func.queued[priority]
        if queued < self.page_jobs and not pages.loading[priority] and self.pager is not None:
            pages.loading[priority] = True
            self.pager.load_page(func.name, priority, pages.after[priority],
                                 pages.start[priority], self.page_jobs)
        if not queued and not func.blocked:
            # Starved: nothing of this function may go until the page is in.
            func.blocked = True
            for ready in self.ready:
                ready.pop(func, None)

    def _spilled_key(self, func: Function, unique: bytes, data: bytes) -> bool:
        spill = self.spill
        return spill is not None and bool(
            spill.candidates(spill.key_hash(func.name, unique, data)))

    # ------------------------------------------------------------------ paging in

    def paged(self, function: bytes, priority: int, rows: list[PagedRow]) -> None:
        """The store answered :meth:`PageHooks.load_page`: bring the spilled jobs among
        ``rows`` back into memory, in order."""
        self._now = 0.0  # called between reads: a new batch
        spill = self.spill
        func = self.functions.get(function)
        pages = func.pages if func is not None else None
        if spill is None or func is None or pages is None:
            return
        pages.loading[priority] = False
        self.pages_read += 1
        for row in rows:
            handle = row[1]
            ref = spill.ref(handle)
            if not spill.holds(ref):
                live = self.jobs.get(handle)
                if live is not None and live.state == PENDING:
                    # Stored, but persisted() has not run yet: it may still spill, so
                    # the page must not move past it (the next read resumes here).
                    break
                pages.after[priority] = row[0]
                continue  # in memory, or ended (its removal not yet committed)
            pages.after[priority] = row[0]
            pages.start[priority] = b""
            spill.unmark(ref)
            pages.spilled[priority] -= 1
            func.deep -= 1
            self._page_in(func, ref, row)
        else:
            if len(rows) < self.page_jobs and pages.spilled[priority]:
                self._lost(func, priority)
        if func.blocked and not func.starved():
            self._reflow(func)
        self._low(func, priority)

    def _page_in(self, func: Function, ref: int, row: PagedRow) -> None:
        _, handle, _, unique, data, priority, when, reducer, retries, submitted = row
        job = Job(func, unique, data, priority, True)
        number = self.jobs.own_number(handle)
        if number > 0:
            self.jobs.readd(job, number)
        else:
            self.jobs.add_foreign(handle, job)
        if reducer or when or retries:
            more = job.extras()
            more.reducer = reducer
            more.when = float(when)
            more.retries = retries
        job.submitted = submitted
        job.stored = True
        self.paged_in += 1
        if unique:
            spill = self.spill
            if spill is not None:
                spill.remove_key(spill.key_hash(func.name, unique, data), ref)
            index, key = func.coalescing_index(unique, data)
            if key not in index:
                index[key] = job
        if self._joiners:
            joined = self._joiners.pop(ref, None)
            live = [peer for peer in joined or () if not peer.closed]
            if live:
                job.extras().clients = live
                for peer in live:
                    peer.attached.add(job)
        self._enqueue(job)

    def _lost(self, func: Function, priority: int) -> None:
        """The store has no more of the jobs counted as spilled (removed behind this
        server's back?): stop waiting for them, or pages would be read for ever."""
        pages = func.pages
        assert pages is not None
        missing = pages.spilled[priority]
        pages.spilled[priority] = 0
        func.deep -= missing
        self._note(logging.ERROR, f"{missing} spilled jobs of "
                   f"{func.name.decode('utf-8', 'replace')} are no longer in the store")

    # ------------------------------------------------------------------ lookups

    def _join_spilled(self, peer: Peer, func: Function, unique: bytes, data: bytes,
                      priority: int, background: bool, when: int, reducer: bytes) -> bool:
        """A submission missed the in-memory coalescing index of a deep function: if a
        spilled job may have its key, read that job back before answering (True)."""
        spill = self.spill
        pager = self.pager
        if spill is None or pager is None:
            return False
        refs = spill.candidates(spill.key_hash(func.name, unique, data))
        if not refs:
            return False
        request = Lookup(SUBMIT, peer, self._owe(peer, not background), func.name, unique,
                         data, priority, background, when, reducer)
        pager.lookup([spill.handle(ref) for ref in refs], request)
        return True

    def looked_up(self, request: Lookup, rows: list[PagedRow]) -> None:
        """The store answered :meth:`PageHooks.lookup`: finish ``request``."""
        self._now = 0.0
        if request.kind == SUBMIT:
            self._submit_looked_up(request, rows)
        elif request.kind == STATUS_UNIQUE:
            self._status_looked_up(request, rows)
        elif request.kind == CANCEL:
            self._cancel_looked_up(request, rows)

    def _still_spilled(self, rows: list[PagedRow], function: bytes, unique: bytes,
                       data: bytes) -> PagedRow | None:
        """The row among ``rows`` of a job still spilled with this coalescing key."""
        spill = self.spill
        if spill is None:
            return None
        for row in rows:
            if (row[2] == function and row[3] == unique
                    and (unique != b"-" or row[4] == data)
                    and spill.holds(spill.ref(row[1]))):
                return row
        return None

    def _submit_looked_up(self, request: Lookup, rows: list[PagedRow]) -> None:
        peer, ack, background = request.peer, request.ack, request.background
        if peer.closed and not background:
            return  # nobody waits for a foreground job any more
        func = self.function(request.function)
        unique, data = request.unique, request.data
        index, key = func.coalescing_index(unique, data)
        existing = index.get(key)
        if existing is not None:  # created or paged in meanwhile
            self._coalesce_held(ack, existing, background)
            return
        row = self._still_spilled(rows, func.name, unique, data)
        if row is not None:
            # It stays in the store; a foreground client waits for it to be paged in.
            if not background and self.spill is not None:
                self._joiners.setdefault(self.spill.ref(row[1]), []).append(peer)
            self._pay(ack, created_packet(row[1]))
            return
        limit = func.max_queue[request.priority]
        if limit and func.total >= limit:
            self._pay(ack, error_packet(ErrorCode.QUEUE_ERROR, "Job queue is full"))
            return
        job = Job(func, unique, data, request.priority, background)
        func.submitted += 1
        self.jobs.add(job)
        self._submitted(job, peer)
        if request.reducer or request.when:
            more = job.extras()
            more.reducer = request.reducer
            more.when = float(request.when)
        index[key] = job
        if background and self.store is not None:
            job.state = PENDING
            job.extras().waiting = [ack]
            self.store.add(job)
            return
        created = created_packet(job.handle)
        if not background:
            more = job.extras()
            more.clients = [peer]
            more.handle = job.handle
            more.created = created
            peer.attached.add(job)
        self._pay(ack, created)
        self._activate(job)

    def _coalesce_held(self, ack: Ack, job: Job, background: bool) -> None:
        """``Broker._coalesce_onto`` for a submission whose reply is already held."""
        peer = ack.peer
        if not background:
            more = job.extras()
            if more.clients is None:
                more.clients = [peer]
            else:
                more.clients.append(peer)
            peer.attached.add(job)
        elif not job.background and self.store is not None:
            job.background = True  # a background submission joins a foreground job
            if job.waiting is None:
                job.waiting = [ack]
            else:
                job.waiting.append(ack)
            self.store.add(job)
            return
        if job.state == PENDING or job.waiting:
            if job.waiting is None:
                job.waiting = [ack]
            else:
                job.waiting.append(ack)
        else:
            extras = job.more
            self._pay(ack, extras.created if extras is not None and extras.created
                      else created_packet(job.handle))

    def _status_looked_up(self, request: Lookup, rows: list[PagedRow]) -> None:
        unique = request.unique
        job = self.job_by_unique(unique)
        if job is not None:
            self._pay(request.ack, self._status_unique(unique, job))
            return
        spill = self.spill
        for row in rows:
            ref = spill.ref(row[1]) if spill is not None else -1
            if row[3] == unique and spill is not None and spill.holds(ref):
                waiting = len(self._joiners.get(ref, ()))
                self._pay(request.ack, packet(P.STATUS_RES_UNIQUE, unique, b"1", b"0", b"0",
                                              b"0", b"%d" % waiting))
                return
        self._pay(request.ack, packet(P.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0",
                                      b"0"))

    def _cancel_looked_up(self, request: Lookup, rows: list[PagedRow]) -> None:
        handle = request.data
        if self.jobs.get(handle) is not None:  # paged in meanwhile
            self._pay(request.ack, b"OK\r\n" if self.cancel(handle) else
                      b"ERR UNKNOWN_JOB\r\n")
            return
        spill = self.spill
        ref = spill.ref(handle) if spill is not None else -1
        row = next((r for r in rows if r[1] == handle), None)
        func = self.functions.get(row[2]) if row is not None else None
        if row is None or func is None or spill is None or not spill.unmark(ref):
            self._pay(request.ack, b"ERR UNKNOWN_JOB\r\n")
            return
        _, _, _, unique, data, priority, _, _, retries, submitted = row
        pages = func.pages
        if pages is not None:
            pages.spilled[priority] -= 1
        func.deep -= 1
        if unique:
            spill.remove_key(spill.key_hash(func.name, unique, data), ref)
        gone = Job(func, unique, data, priority, True)  # what the store hook needs
        gone.extras().handle = handle
        gone.state = DONE
        if self.store is not None:
            self.store.remove(gone)
        failed = packet(P.WORK_FAIL, handle)
        for client in self._joiners.pop(ref, None) or ():
            self._send(client, failed)
        self._note(logging.INFO, f"job {handle.decode('utf-8', 'replace')} cancelled "
                   "(it was spilled to the store)")
        if self.outcomes.keep > 0:
            self._keep(Outcome(handle, func.name, unique, CANCELLED, CANCELLED_REASON,
                               retries, submitted, 0.0, self.clock()))
        if func.blocked and not func.starved():
            self._reflow(func)
        self._pay(request.ack, b"OK\r\n")

    # ------------------------------------------------------------------ status

    def cancel_command(self, handle: bytes, peer: Peer | None) -> bytes:
        """Admin ``cancel job HANDLE``: the reply, or b"" when it is held while a
        spilled job is read back."""
        if self.jobs.get(handle) is None and peer is not None:
            spill = self.spill
            if spill is not None and self.pager is not None and spill.holds(spill.ref(handle)):
                request = Lookup(CANCEL, peer, self._owe(peer), data=handle)
                self.pager.lookup([handle], request)
                return b""
        return b"OK\r\n" if self.cancel(handle) else b"ERR UNKNOWN_JOB\r\n"

    def spilled_handles(self) -> list[bytes]:
        """Handles of every spilled job (``show jobs``)."""
        spill = self.spill
        return [spill.handle(ref) for ref in spill.refs()] if spill is not None else []

    def job_by_unique(self, unique: bytes) -> Job | None:
        """The live job in memory with this unique key in any function
        (GET_STATUS_UNIQUE ignores the function, as gearmand's does). A scan over the
        functions: the status lookup is rare, and a global index cost 52 bytes per
        queued unique job. For ``-`` (the payload is the key) it is some job submitted
        with ``-``."""
        if unique == b"-":
            for func in self.functions.values():
                for job in func.payloads.values():
                    return job
            return None
        for func in self.functions.values():
            found = func.uniques.get(unique)
            if found is not None:
                return found
        return None

    def _get_status(self, peer: Peer, fields: list[bytes]) -> None:
        handle = fields[0]
        job = self.jobs.get(handle)
        if job is None:
            spill = self.spill
            known = b"1" if spill is not None and spill.holds(spill.ref(handle)) else b"0"
            self._send(peer, packet(P.STATUS_RES, handle, known, b"0", b"0", b"0"))
            return
        self._send(peer, packet(
            P.STATUS_RES, handle, b"1", b"1" if job.state == RUNNING else b"0",
            str(job.numerator).encode(), str(job.denominator).encode(),
        ))

    def _get_status_unique(self, peer: Peer, fields: list[bytes]) -> None:
        unique = fields[0]
        job = self.job_by_unique(unique)
        if job is not None:
            self._send(peer, self._status_unique(unique, job))
            return
        spill = self.spill
        if spill is not None and self.pager is not None and unique != b"-":
            refs = [ref for func in self.functions.values() if func.deep
                    for ref in spill.candidates(spill.key_hash(func.name, unique, b""))]
            if refs:
                self.pager.lookup([spill.handle(ref) for ref in refs],
                                  Lookup(STATUS_UNIQUE, peer, self._owe(peer), unique=unique))
                return
        self._send(peer, packet(P.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0"))

    @staticmethod
    def _status_unique(unique: bytes, job: Job) -> bytes:
        return packet(
            P.STATUS_RES_UNIQUE, unique, b"1", b"1" if job.state == RUNNING else b"0",
            str(job.numerator).encode(), str(job.denominator).encode(),
            str(len(job.clients or ())).encode())

    def memory_report(self) -> dict[str, int]:
        """What admin ``memory`` shows: jobs in memory and in the store only."""
        spill = self.spill
        return {
            "jobs_in_memory": len(self.jobs),
            "queued_in_memory": sum(sum(f.queued) for f in self.functions.values()),
            "spilled": spill.count if spill is not None else 0,
            "queue_memory": self.queue_memory,
            "page_jobs": self.page_jobs if spill is not None else 0,
            "pages_read": self.pages_read,
            "paged_in": self.paged_in,
            "pages_loading": sum(sum(f.pages.loading) for f in self.functions.values()
                                 if f.pages is not None),
            "spill_keys": spill.keys if spill is not None else 0,
            "spill_table_bytes": spill.table_bytes if spill is not None else 0,
        }
