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
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Final

from gearshift.broker._config import BrokerConfig, StoreHooks
from gearshift.broker._flow import FlowSetting, flow_control
from gearshift.broker._idle_functions import without_idle
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

#: A batch of packets with admin lines stops once this many reply bytes wait for the
#: peer, and goes on when they are written (the transport's own high-water mark is 64 KiB):
#: 3,000 pipelined ``show jobs`` are answered a few at a time, not all into memory.
ADMIN_BATCH_BYTES: Final = 64 << 10
#: Most admin flow settings (``pause``, ``limit``) kept; beyond it they answer ERR. With
#: names of at most MAX_FLOW_NAME bytes they fit in one memcached item (1 MiB).
MAX_FLOW_OVERRIDES: Final = 1_000
#: Longest function name an admin flow setting may name (a store key in every backend).
MAX_FLOW_NAME: Final = 256

#: attempt marker of a timer entry that releases a scheduled job (epoch or retry)
EPOCH_TIMER: Final = -1
#: The ``attempt`` of a wake-up check (see ``BrokerState._arm_wake_check``).
WAKE_TIMER: Final = -2


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
        # The last function looked up by name (reset when idle records are freed).
        self._last_function: Function | None = None
        #: how many function records trigger freeing the idle ones (see function())
        self._sweep_at = self.config.max_idle_functions
        #: --max-memory: workload bytes of live jobs beyond which submissions are
        #: refused (0 = no limit)
        self.max_memory = self.config.max_memory
        #: admin flow settings (pause, limit) by exact function name, persisted; each
        #: applies over the startup rules when its function exists (or appears)
        self.flow_overrides: dict[bytes, FlowSetting] = {}
        #: functions held back by their rate alone -> when their next token is due
        self.flow_waits: dict[Function, float] = {}
        #: live jobs by handle
        self.jobs = JobTable(self.config.handle_prefix)
        # ready[p]: functions with at least one runnable job of priority p.
        self.ready: tuple[dict[Function, None], ...] = ({}, {}, {})
        self.timers: list[tuple[float, int, Job, int]] = []
        self.outcomes = OutcomeBook(self.config.keep_results, self.config.results_max_bytes,
                                    self.config.dead_max_bytes)
        self.schedules = ScheduleBook()
        self.shutdown_request: str | None = None
        #: ``wakeup_timeout``, read per queued job (0.0 = no wake-up checks)
        self._wake_check_after = self.config.wakeup_timeout if self.config.worker_wakeup else 0.0
        #: Connections the broker dropped (see ``Broker._drop_short``): the I/O shell
        #: closes their sockets at its next flush and empties this list.
        self.hangups: list[Peer] = []
        #: Peers whose batch stopped with a backlog (``Broker._admin_lines``): the I/O
        #: shell stops reading them and calls ``Broker.resume`` as their replies drain.
        self.stalled: list[Peer] = []
        #: Set while shutting down gracefully: running jobs may finish, none are handed out.
        self.draining = False
        #: Admin ``drain``: new submissions are refused (ERROR QUEUE_ERROR) while queued
        #: and running jobs go on being handed out and finished.
        self.refusing = False
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
        #: BrokerConfig.timing, read per job start and end
        self.timing = self.config.timing

    def now(self) -> float:
        """The clock, read at most once per moment: a moment ends at each flush
        (:meth:`take_dirty`, once per event-loop iteration with output) and a new one
        starts at a batch of packets arriving when nothing awaits a flush, a timer or a
        store callback. Background jobs are stamped three times in their life; reading
        ``time.time`` for each was ~300 instructions a time (a new moment per batch
        still read it about once per job: a worker's WORK_COMPLETE + GRAB_JOB is a
        batch), and what one loop iteration handles happens at the same moment anyway:
        a reading is never older than the iteration."""
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
        if self.flow_waits:
            due = min(self.flow_waits.values())
            if wake == 0.0 or due < wake:
                wake = due
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
        self._now = 0.0  # the end of a moment (see now)
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
            if len(self.functions) >= self._sweep_at:
                self._free_idle_functions()
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
            if self.config.flow or self.flow_overrides:
                self._apply_flow(func)
        return func

    def _free_idle_functions(self) -> None:
        """Forget the function records that hold nothing (see ``_idle_functions``). Runs
        when the records reach ``--max-idle-functions``; the next run waits until there
        are twice as many as remain, so busy functions are not rescanned per new name."""
        self.functions, freed = without_idle(self.functions, self.ready, self.config)
        self._last_function = None
        self._sweep_at = max(self.config.max_idle_functions, 2 * len(self.functions))
        notify = self.notify
        if freed and notify is not None:
            notify(logging.INFO, f"forgot {freed} idle function records "
                   f"(--max-idle-functions {self.config.max_idle_functions})")

    def set_max_queue(self, name: bytes, limits: list[int]) -> None:
        """Admin ``maxqueue``: cap ``name`` now, or when it is first seen if it does not
        exist yet (gearmand ignores the latter; a cap set before the first job is the
        one that protects the server)."""
        override = self.flow_overrides.get(name, FlowSetting())
        low, normal, high = limits[2], limits[1], limits[0]
        # Kept with the function's other admin settings, so the store keeps it too.
        self.set_flow(name, replace(override, max_queue=(high, normal, low)))
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
        if not count and not func.blocked:
            self.ready[prio][func] = None
        queued[prio] = count + 1
        if func.sleepers and not func.blocked:
            self._wake(func)
            if func.sleepers and self._wake_check_after > 0.0 and not func.wake_check:
                self._arm_wake_check(job)

    def _unqueue(self, job: Job) -> None:
        """Take a QUEUED or SCHEDULED job out of the counts (its queue entry goes lazily)."""
        func = job.function
        if job.state == SCHEDULED:
            func.scheduled -= 1
            return
        prio = job.priority
        func.queued[prio] -= 1
        if not func.queued[prio]:
            self.ready[prio].pop(func, None)  # (a blocked function is in no ready list)
            func.queues[prio].clear()
        if func.deep:
            self._low(func, prio)

    def _low(self, func: Function, priority: int) -> None:
        """A deep queue's head shrank: read its next page (``_deep.DeepQueues``)."""

    def _spilled(self, job: Job, position: int) -> bool:
        """Leave ``job`` in the store only, if its queue is deep (``_deep.DeepQueues``)."""
        return False

    def _spilled_key(self, func: Function, unique: bytes, data: bytes) -> bool:
        """Whether a spilled job of ``func`` may coalesce with these (``_deep``)."""
        return False

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

    def _wake(self, func: Function, limit: int = -1) -> None:
        """NOOP up to ``limit`` sleeping workers of ``func`` (0 = all; by default
        ``worker_wakeup``)."""
        sleepers = func.sleepers
        if limit < 0:
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

    def _arm_wake_check(self, job: Job) -> None:
        """Check ``wakeup_timeout`` seconds from now that ``job``'s function has no
        queued job left while some of its workers sleep un-woken.

        Waking only some sleepers (``-w N``) trusts each woken worker to come and grab.
        One that does not -- stopped, hung, or a socket still held open by a parent
        process after the worker itself died, as Perl's Gearman::Worker tests leave them
        -- would keep the job waiting for ever while a live worker sleeps next to it
        (gearmand's default wakes every sleeper, so it never sees this). One check per
        function at a time: a heap push at most once per ``wakeup_timeout`` per function,
        whatever the job rate.
        """
        job.function.wake_check = True
        heapq.heappush(self.timers, (self.now() + self._wake_check_after,
                                     next(self._timer_seq), job, WAKE_TIMER))

    def _check_wake(self, func: Function) -> None:
        """A wake-up check is due: jobs still queued with workers left sleeping means a
        woken worker did not come, so every sleeper of the function gets its NOOP."""
        func.wake_check = False
        queued = func.queued
        if (queued[0] or queued[1] or queued[2]) and func.sleepers and not self.draining:
            self._wake(func, 0)
    # ------------------------------------------------------------------ flow control

    def flow_setting(self, name: bytes) -> FlowSetting:
        """The setting in force for function ``name``: the startup rules with any admin
        override over them."""
        base = self.config.flow.for_function(name)
        override = self.flow_overrides.get(name)
        return base if override is None else override.over(base)

    def set_flow(self, name: bytes, override: FlowSetting) -> bool:
        """Admin ``pause``/``resume``/``limit``: keep ``override`` for function ``name``
        (an empty one goes back to the startup rules), persist it, and apply it now if
        the function exists (else when it appears). False when too many are kept."""
        overrides = self.flow_overrides
        store = self.store
        if override.empty:
            if overrides.pop(name, None) is not None and store is not None:
                store.drop_flow(name)
        else:
            if name not in overrides and len(overrides) >= MAX_FLOW_OVERRIDES:
                return False
            overrides[name] = override
            if store is not None:
                store.put_flow(name, override.text)
        func = self.functions.get(name)
        if func is not None:
            self._apply_flow(func)
        return True

    def restore_flow(self, name: bytes, text: str) -> None:
        """Keep a stored admin flow setting at startup (ValueError if unreadable)."""
        self.flow_overrides[name] = FlowSetting.parse(text)
        func = self.functions.get(name)
        if func is not None:
            self._apply_flow(func)

    def _apply_flow(self, func: Function) -> None:
        """(Re)build ``func``'s flow state from its setting; a bucket keeps its tokens
        while its rate stays the same."""
        setting = self.flow_setting(func.name)
        if setting.max_queue is not None:
            func.max_queue = list(setting.max_queue)
        func.flow = flow_control(setting, func.flow, self.now()) if setting.limited else None
        self._reflow(func)

    def _reflow(self, func: Function) -> None:
        """Put ``func`` in or out of the ready lists as its limits say now.

        A blocked function is in no ``ready`` list, so the grab scans and PRE_SLEEP's
        check never see it and a worker gets another function's job or NO_JOB. It is
        let out again when a job of it ends, when a token returns (a timer, armed only
        while the rate alone holds it back) or when an admin changes its limits; then
        as many sleeping workers are woken as jobs may start.
        """
        flow = func.flow
        now = self.now()
        if flow is None:
            free = 1 << 30
        else:
            flow.refill(now)
            free = flow.slots(func.running)
        if free > 0:
            self.flow_waits.pop(func, None)
            if func.blocked and not (func.deep and func.starved()):
                self._unblock(func, free)
            return
        if not func.blocked:
            func.blocked = True
            for ready in self.ready:
                ready.pop(func, None)
        if flow is not None and not flow.paused and (
                flow.concurrency < 0 or func.running < flow.concurrency):
            due = flow.token_due(now)
            self.flow_waits[func] = due
            if self.wake_at == 0.0 or due < self.wake_at:
                self.wake_at = due

    def _unblock(self, func: Function, free: int) -> None:
        func.blocked = False
        queued = func.queued
        waiting = 0
        for prio in range(3):
            if queued[prio]:
                self.ready[prio][func] = None
                waiting += queued[prio]
        wakes = min(free, waiting) if self.config.worker_wakeup else 1
        while wakes > 0 and waiting and func.sleepers:
            self._wake(func)
            wakes -= 1

    def _flow_started(self, func: Function) -> bool:
        """A job of a function with flow settings was just taken for a worker (its
        ``running`` is counted by the assignment that follows): take a token, hold the
        function back if that was its last slot, and say whether it keeps its place in
        the round robin (True: a weight's turn is not over, or it left the ready lists).
        """
        flow = func.flow
        if flow is None:
            return False
        if flow.per_second > 0.0:
            flow.refill(self.now())
            flow.tokens -= 1.0
        if flow.slots(func.running + 1) <= 0:
            self._reflow_after(func)
            return True
        if flow.weight > 1:
            flow.turn += 1
            if flow.turn < flow.weight:
                return True  # served again before the next function's turn
            flow.turn = 0
        return False

    def _reflow_after(self, func: Function) -> None:
        """:meth:`_reflow` counting the job being assigned as running already."""
        func.running += 1
        self._reflow(func)
        func.running -= 1

    def _flow_timers(self, now: float) -> None:
        """Tokens came back (run_timers): let out the functions whose token is due."""
        due = [func for func, at in self.flow_waits.items() if at <= now]
        for func in due:
            del self.flow_waits[func]
            self._reflow(func)

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
