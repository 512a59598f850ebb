"""The broker's state and the operations every dispatch rule is built from.

:class:`BrokerState` holds what the job server knows -- connections, functions, live
jobs, the ready lists, timers, held replies -- and the small steps that keep it
consistent: queue a job, take it out of the counts, forget it, wake a sleeping worker,
hold a reply back until the store has answered. The rules that decide *when* to take
those steps are in :mod:`._lifecycle` (how jobs end: results, failures, retries, dead
letters, schedules) and :mod:`._broker` (what each packet does). No I/O: replies are
appended to each peer's ``out`` and the peer is listed in :attr:`BrokerState.dirty`.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Final

from gearshift.broker._config import BrokerConfig, StoreHooks
from gearshift.broker._jobs import JobTable
from gearshift.broker._model import (
    DONE,
    QUEUED,
    SCHEDULED,
    Ack,
    Function,
    Job,
    Peer,
)
from gearshift.broker._outcomes import Outcome, OutcomeBook
from gearshift.broker._packets import NOOP_PACKET
from gearshift.broker._schedules import ScheduleBook

#: Most admin ``maxqueue`` limits kept for functions that do not exist yet; past it the
#: oldest is forgotten, so the admin port cannot be used to grow memory without bound.
MAX_PENDING_QUEUE_LIMITS: Final = 10_000

#: attempt marker of a timer entry that releases a scheduled job (epoch or retry)
EPOCH_TIMER: Final = -1


class BrokerState:
    """All job-server state and the steps that change it consistently.

    Args:
        config: dispatch settings.
        clock: wall-clock seconds (``time.time``); injected so tests control time.
        store: durable-storage hooks, or None for a memory-only server.
        rng: the source of retry jitter; injected so tests can fix it.
    """

    def __init__(self, config: BrokerConfig | None = None,
                 clock: Callable[[], float] = time.time,
                 store: StoreHooks | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config if config is not None else BrokerConfig()
        if not self.config.pid:
            self.config.pid = os.getpid()
        self.clock = clock
        self.store = store
        self.rng = rng if rng is not None else random.Random()
        self.dirty: list[Peer] = []
        self.peers: dict[int, Peer] = {}
        self.functions: dict[bytes, Function] = {}
        #: admin ``maxqueue`` limits for functions not seen yet, applied at creation
        self.pending_max_queue: dict[bytes, list[int]] = {}
        self._last_function: Function | None = None  # functions are never removed
        #: live jobs by handle
        self.jobs = JobTable(self.config.handle_prefix)
        # ready[p]: functions with at least one runnable job of priority p.
        self.ready: tuple[dict[Function, None], ...] = ({}, {}, {})
        self.timers: list[tuple[float, int, Job, int]] = []
        self.outcomes = OutcomeBook(self.config.keep_results, self.config.results_max_bytes,
                                    self.config.dead_max_bytes)
        self.schedules = ScheduleBook()
        self.shutdown_request: str | None = None
        #: Set while shutting down gracefully: running jobs may finish, none are handed out.
        self.draining = False
        #: With a store shared by several servers: the clock time up to which this
        #: server's lease is known to hold (0.0 = no lease, the usual case). Past it
        #: another server may have adopted the stored jobs, so none are handed out
        #: until :meth:`lease_renewed` (see server/_cluster.py).
        self.lease_until = 0.0
        #: This server's id in a shared store, and every server's lease as the last
        #: renewal saw it: (id, epoch, expiry on this clock, adopted by) -- admin ``cluster``.
        self.server_id = ""
        self.cluster: list[tuple[str, int, float, str]] = []
        self._peer_ids = itertools.count(1)
        self._timer_seq = itertools.count()
        self._rr = 0  # round-robin clock: a worker's function is stamped when served
        self._gated = 0  # peers with a reply held for the store (see _owe)
        self._schedule_seq = 0  # the last schedule key's number
        #: dead letters being queued again, until the store has the job (handle -> it)
        self._revived: dict[bytes, Outcome] = {}
        #: The clock read once per batch of packets (see :meth:`now`); 0.0 = not yet.
        self._now = 0.0
        #: When schedules or kept outcomes next need :meth:`run_timers` (0.0 = never):
        #: the I/O shell arms its timer from this and the job-timer heap, without a call.
        self.wake_at = 0.0
        #: Where notes for operators go: ``notify(logging level, text)`` (the server logs
        #: them); None drops them.
        self.notify: Callable[[int, str], None] | None = None
        #: Note every job's life at DEBUG too (submitted, assigned, completed): set by
        #: the server only when its log shows DEBUG, so the hot path pays one bool test.
        self.trace = False

    def now(self) -> float:
        """The clock, read at most once per batch of packets (``handle_packets``, a timer,
        a store callback each start a new batch). Background jobs are stamped three
        times in their life; reading ``time.time`` for each was ~300 instructions a
        time, and jobs handled in one batch happen at the same moment anyway."""
        t = self._now
        if t == 0.0:
            t = self._now = self.clock()
        return t

    def _trace(self, job: Job, what: str) -> None:
        """A DEBUG note of one step in ``job``'s life (only called when ``trace``)."""
        notify = self.notify
        if notify is not None:
            notify(10, f"job {job.handle.decode('utf-8', 'replace')} "
                       f"({job.function.name.decode('utf-8', 'replace')}) {what}")

    def _rewake(self) -> None:
        """Recompute :attr:`wake_at` from the schedules and the oldest kept outcome."""
        wake = 0.0
        if self.schedules.schedules:
            slot = self.schedules.next_deadline()
            if slot is not None:
                wake = slot
        expiry = self.outcomes.next_expiry()
        if expiry is not None:
            # Expiry is housekeeping: to whole seconds, so outcomes ending in a stream
            # do not move the timer for every job.
            expiry = float(int(expiry) + 1)
            if wake == 0.0 or expiry < wake:
                wake = expiry
        self.wake_at = wake

    # ------------------------------------------------------------------ connections

    def connect(self, host: str = "", port: int = 0, fd: int = -1) -> Peer:
        """Register a new connection and return its peer record."""
        peer = Peer(next(self._peer_ids), host, port, fd, self.config.exceptions)
        self.peers[peer.id] = peer
        return peer

    def _pass_wakeup(self, funcs: Iterable[Function]) -> None:
        """A woken worker will not take the queued jobs it was NOOPed for (it left, or
        dropped the function): wake another sleeper of each of ``funcs`` with work, or
        with wake-one (-w 1) those jobs could wait for ever while capable workers sleep."""
        for func in funcs:
            if func.queued[0] or func.queued[1] or func.queued[2]:
                self._wake(func)

    # ------------------------------------------------------------------ output

    def _send(self, peer: Peer, data: bytes) -> None:
        if peer.closed:
            return
        if not peer.out:
            self.dirty.append(peer)
        peer.out.append(data)

    def take_dirty(self) -> list[Peer]:
        """Peers with output waiting; the caller writes and clears their ``out``."""
        dirty = self.dirty
        self.dirty = []
        if self._gated:
            # A peer can be listed twice (_park empties ``out`` while the peer stays
            # listed, so the next _send lists it again). Visit each once: a second _park
            # after the mark was reset would move the releasable bytes behind the gate.
            seen: set[int] = set()
            for peer in dirty:
                if peer.gates is not None and peer.id not in seen:
                    seen.add(peer.id)
                    # Only what precedes the first held reply may be written now.
                    self._park(peer)
                    peer.gate_mark = 0
        return dirty

    # ------------------------------------------------------------------ functions

    def function(self, name: bytes) -> Function:
        """The function record for ``name``, created on first mention (as gearmand does)."""
        func = self.functions.get(name)
        if func is None:
            func = self.functions[name] = Function(name, self.jobs.prefix)
            func.retry = self.config.retry.for_function(name)
            pending = self.pending_max_queue.pop(name, None) if self.pending_max_queue \
                else None
            if pending is not None:
                func.max_queue = pending
            elif self.config.max_queue:
                limits = self.config.max_queue.for_function(name)
                if limits is not None:
                    func.max_queue = list(limits)
        return func

    def set_max_queue(self, name: bytes, limits: list[int]) -> None:
        """Admin ``maxqueue``: cap ``name`` now, or when it is first seen if it does not
        exist yet (gearmand ignores the latter; a cap set before the first job is the
        one that protects the server)."""
        func = self.functions.get(name)
        if func is not None:
            func.max_queue = limits
            return
        pending = self.pending_max_queue
        pending.pop(name, None)
        while len(pending) >= MAX_PENDING_QUEUE_LIMITS:
            del pending[next(iter(pending))]
        pending[name] = limits

    def set_handle_prefix(self, prefix: bytes) -> None:
        """Change what new job handles start with; only before the first job is created
        (a handle's number is parsed back with the prefix it was minted under)."""
        if self.jobs.minted:
            raise RuntimeError("the handle prefix cannot change once jobs were created")
        self.config.handle_prefix = prefix
        self.jobs.prefix = prefix
        for func in self.functions.values():
            func.handle_prefix = prefix

    # ------------------------------------------------------------------ queues

    def _activate(self, job: Job) -> None:
        """Make a created job runnable now, or schedule it for its epoch time."""
        if job.when and job.when > self.clock():
            job.state = SCHEDULED
            job.function.scheduled += 1
            heapq.heappush(self.timers, (job.when, next(self._timer_seq), job, EPOCH_TIMER))
        else:
            self._enqueue(job)

    def _enqueue(self, job: Job) -> None:
        job.state = QUEUED
        func = job.function
        prio = job.priority
        func.queues[prio].append(job)
        queued = func.queued
        count = queued[prio]  # (an augmented assignment to an item is a generic add)
        if not count:
            self.ready[prio][func] = None
        queued[prio] = count + 1
        if func.sleepers:
            self._wake(func)

    def _unqueue(self, job: Job) -> None:
        """Take a QUEUED or SCHEDULED job out of the counts (its queue entry goes lazily)."""
        func = job.function
        if job.state == SCHEDULED:
            func.scheduled -= 1
            return
        prio = job.priority
        func.queued[prio] -= 1
        if not func.queued[prio]:
            del self.ready[prio][func]
            func.queues[prio].clear()

    def _forget(self, job: Job) -> None:
        """Remove a job from every index; it is DONE."""
        job.state = DONE
        self.jobs.remove(job)
        if job.unique:
            self._unindex(job)
        if job.clients:
            for client in job.clients:
                client.attached.discard(job)

    @staticmethod
    def _unindex(job: Job) -> None:
        """Take a job with a unique out of its function's coalescing index (if it is the
        one indexed: a replayed duplicate may not be)."""
        index, key = job.function.coalescing_index(job.unique, job.data)
        if index.get(key) is job:
            del index[key]

    def job_by_unique(self, unique: bytes) -> Job | None:
        """The live job with this unique key in any function (GET_STATUS_UNIQUE ignores
        the function, as gearmand's does). A scan over the functions: the status lookup
        is rare, and a global index cost 52 bytes per queued unique job. For ``-`` (the
        payload is the key) it is some job submitted with ``-``."""
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

    # ------------------------------------------------------------------ sleeping workers

    @staticmethod
    def _compact_sleepers(func: Function) -> None:
        """Drop wake-list entries of peers that woke or left since (bounds memory)."""
        live = [
            (p, e) for p, e in func.sleepers
            if p.sleeping and not p.noop_sent and p.sleep_epoch == e and not p.closed
        ]
        func.sleepers.clear()
        func.sleepers.extend(live)

    def _wake(self, func: Function) -> None:
        """NOOP up to ``worker_wakeup`` sleeping workers of ``func`` (0 = all)."""
        sleepers = func.sleepers
        limit = self.config.worker_wakeup
        woken = 0
        while sleepers:
            peer, epoch = sleepers.popleft()
            if (peer.sleeping and not peer.noop_sent and peer.sleep_epoch == epoch
                    and not peer.closed and func in peer.functions):
                peer.noop_sent = True
                peer.urgent = True
                if not peer.out:
                    self.dirty.append(peer)
                peer.out.append(NOOP_PACKET)
                woken += 1
                if woken == limit:
                    return

    # ------------------------------------------------------------------ held replies

    def _owe(self, peer: Peer, foreground: bool = False) -> Ack:
        """Reserve ``peer``'s next reply for a JOB_CREATED that waits for the store.

        Later replies to the peer queue behind it until :meth:`_pay`, so replies leave in
        request order even though the store answers asynchronously.
        """
        ack = Ack(peer, foreground)
        if peer.gates is None:
            peer.gates = deque((ack,))
            peer.gate_mark = len(peer.out)
            self._gated += 1
        else:
            self._park(peer)
            peer.gates.append(ack)
        return ack

    @staticmethod
    def _park(peer: Peer) -> None:
        """Move output written behind the first held reply from ``out`` to the gates."""
        out = peer.out
        mark = peer.gate_mark
        if len(out) > mark and peer.gates is not None:
            peer.gates.append(b"".join(out[mark:]))
            del out[mark:]

    def _pay(self, ack: Ack, reply: bytes) -> None:
        """Fill a held reply; release it and whatever no longer waits behind one."""
        ack.reply = reply
        peer = ack.peer
        gates = peer.gates
        if peer.closed or gates is None:
            return
        self._park(peer)
        out = peer.out
        was_empty = not out
        while gates:
            head = gates[0]
            if isinstance(head, Ack):
                if head.reply is None:
                    break
                out.append(head.reply)
            else:
                out.append(head)
            gates.popleft()
        peer.gate_mark = len(out)
        if not gates:
            peer.gates = None
            self._gated -= 1
        if was_empty and out:
            self.dirty.append(peer)

    # ------------------------------------------------------------------ timers

    @property
    def running_jobs(self) -> int:
        """Jobs currently held by workers (what a graceful shutdown waits for)."""
        return sum(f.running for f in self.functions.values())

    def next_deadline(self) -> float | None:
        """Clock time of the earliest pending timer: an epoch or retry release, a job
        timeout, a schedule's slot, or the next kept outcome to expire."""
        deadline = self.timers[0][0] if self.timers else None
        wake = self.wake_at
        if wake > 0.0 and (deadline is None or wake < deadline):
            deadline = wake
        return deadline
