"""How jobs end: results kept, failures retried or buried, cancellations, schedules.

gearmand forgets a background job the moment it ends, retries nothing, and drops a job
its workers keep losing (``-j``) without a word. :class:`JobLifecycle` adds on top of
the broker's state what users of a job server expect, without changing a single packet
a Gearman client or worker sees:

* a background job's **outcome** (result or reason, attempts, timestamps) is kept for
  ``--keep-results`` in :class:`~gearshift.broker._outcomes.OutcomeBook`;
* under a **retry policy** a failed, raising, timed-out or orphaned background job is
  scheduled again with exponential backoff (:mod:`._retry`); without one gearmand's
  behaviour stands;
* a background job that failed for good is a **dead letter**, which an operator can
  list, retry or purge;
* **schedules** (SUBMIT_JOB_SCHED) submit a background job per cron slot.

Every change is mirrored to the store hooks, so a restart loses none of it. No I/O:
what operators should read is handed to :attr:`JobLifecycle.notify` (the server logs it).
"""

from __future__ import annotations

import heapq
import logging
from typing import Final

from gearshift.broker._core import EPOCH_TIMER, WAKE_TIMER, BrokerState
from gearshift.broker._model import (
    DONE,
    PENDING,
    QUEUED,
    RUNNING,
    SCHEDULED,
    Ack,
    Job,
    Peer,
)
from gearshift.broker._outcomes import (
    CANCELLED,
    COMPLETE,
    DEAD,
    EXCEPTION,
    FAILED,
    Outcome,
)
from gearshift.broker._packets import created_packet, error_packet, packet
from gearshift.broker._schedules import Schedule
from gearshift.broker._timing import time_run
from gearshift.protocol._spec import ErrorCode, PacketType

P = PacketType

#: Reasons kept per job (the latest); a job requeued thousands of times keeps a bounded list.
MAX_REASONS: Final = 20
#: Longest failure reason kept (WORK_EXCEPTION data can be large).
MAX_REASON_BYTES: Final = 4096

WORKER_LOST: Final = b"worker disconnected while running the job"
#: The reason a cancelled job's outcome and exception-aware clients are given.
CANCELLED_REASON: Final = b"cancelled"

__all__ = ["CANCELLED", "COMPLETE", "DEAD", "EXCEPTION", "FAILED", "JobLifecycle"]


class JobLifecycle(BrokerState):
    """Job endings on top of :class:`BrokerState` (see the module docstring)."""

    def _note(self, level: int, text: str) -> None:
        notify = self.notify
        if notify is not None:
            notify(level, text)

    @staticmethod
    def _name(job: Job) -> str:
        return (f"{job.handle.decode('utf-8', 'replace')} "
                f"({job.function.name.decode('utf-8', 'replace')})")

    # ------------------------------------------------------------------ connections

    def disconnect(self, peer: Peer) -> None:
        """Forget a connection: requeue what it was running, detach it from its jobs."""
        if peer.closed:
            return
        peer.closed = True
        self.peers.pop(peer.id, None)
        peer.out.clear()
        if peer.gates is not None:
            peer.gates = None
            self._gated -= 1
        for job in list(peer.held):
            self._requeue(job, WORKER_LOST)
        was_woken = peer.noop_sent
        for func in peer.functions:
            func.workers.pop(peer, None)
        for job in peer.attached:
            if job.clients and peer in job.clients:
                # Attached once per submission (e.g. the same unique sent twice): drop
                # every entry, or the job would never count as abandoned.
                job.clients = [c for c in job.clients if c is not peer]
            if not job.clients and not job.background and job.state == QUEUED:
                self._unqueue(job)
                self._forget(job)
        peer.attached.clear()
        if was_woken:
            self._pass_wakeup(peer.functions)
        peer.functions.clear()
        peer.only = None

    # ------------------------------------------------------------------ endings

    def _detach(self, job: Job) -> None:
        """Take a running job off its worker."""
        worker = job.worker
        if worker is not None:
            worker.held.discard(job)
        job.worker = None
        func = job.function
        func.running -= 1
        if func.blocked:  # a limit held its jobs back: one may go now
            self._reflow(func)

    def _finish(self, job: Job) -> None:
        """A running job ended: off its worker, out of the store and the indexes."""
        self._detach(job)
        if job.stored and self.store is not None:
            self.store.remove(job)
        self._forget(job)

    def _fail_clients(self, job: Job) -> None:
        fail = packet(P.WORK_FAIL, job.handle)
        for client in job.clients or ():
            self._send(client, fail)

    def _drop_stored(self, job: Job) -> None:
        if job.stored and self.store is not None:
            self.store.remove(job)
            job.stored = False

    def _submitted(self, job: Job, peer: Peer) -> None:
        """A job was accepted: stamp a background one (its outcome reports the time) and,
        with ``timing``, every one (its queue wait is measured from it)."""
        if job.background or self.timing:
            job.submitted = self.now()
        if self.trace:
            self._trace(job, f"submitted ({'background' if job.background else 'foreground'}"
                        f", priority {job.priority}) by {peer.host}:{peer.port}")

    def _completed(self, job: Job, handle: bytes, result: bytes) -> None:
        """A job completed (its row was removed already): keep a background job's result.
        ``handle`` is the one the worker sent (the job's own: no need to build it)."""
        if self.trace:
            self._trace(job, f"completed ({len(result)} bytes of result)")
        book = self.outcomes
        if not job.background or book.keep <= 0:
            return
        more = job.more
        attempts = more.retries + 1 if more is not None else 1
        ended = self.now()
        if not book.count:
            self.wake_at = 0.0  # the first kept outcome: its expiry needs a timer
        name = job.function.name
        evicted = book.add_result(handle, name, job.unique, COMPLETE, result, attempts,
                                  job.submitted, job.started, ended)
        if self.wake_at == 0.0:
            self._rewake()
        store = self.store
        if store is None:
            return
        if evicted is None or handle not in evicted:
            store.put_outcome(Outcome(handle, name, job.unique, COMPLETE, result, attempts,
                                      job.submitted, job.started, ended))
        if evicted is not None:
            for old in evicted:
                if old != handle:
                    store.drop_outcome(old)

    def _keep(self, outcome: Outcome) -> None:
        """Put an outcome in the book and the store; drop what the budgets push out."""
        evicted = self.outcomes.add(outcome)
        store = self.store
        for old in evicted:
            if old != outcome.handle and store is not None:
                store.drop_outcome(old)
            if outcome.dead:
                self._note(logging.WARNING,
                           f"dead letter {old.decode('utf-8', 'replace')} dropped: the "
                           "dead-letter budget (--dead-letters-max) is full")
        if outcome.handle not in evicted and store is not None:
            store.put_outcome(outcome)
        if self.wake_at == 0.0:
            self._rewake()

    def _count_failure(self, job: Job, reason: bytes) -> int:
        """Count a failed attempt and keep its reason; returns the failures so far."""
        more = job.extras()
        more.numerator = more.denominator = 0
        more.retries += 1
        reasons = more.reasons
        if reasons is None:
            reasons = more.reasons = []
        reasons.append(reason[:MAX_REASON_BYTES])
        if len(reasons) > MAX_REASONS:
            del reasons[0]
        return more.retries

    def _retry_later(self, job: Job, reason: bytes) -> bool:
        """Count a background job's failed attempt; if its policy allows another, plan
        it after the backoff and return True (the job is then SCHEDULED)."""
        failures = self._count_failure(job, reason)
        policy = job.function.retry
        if policy is None or failures >= policy.attempts:
            return False
        delay = policy.delay(failures, self.rng)
        job.function.retried += 1
        job.extras().when = self.clock() + delay
        self._note(logging.INFO,
                   f"job {self._name(job)} failed (attempt {failures} of {policy.attempts}): "
                   f"{reason.decode('utf-8', 'replace')}; retrying in {delay:.1f}s")
        if job.stored and self.store is not None:
            self.store.update(job)
        self._activate(job)
        return True

    def _bury(self, job: Job, state: str, reason: bytes) -> None:
        """A background job failed for good (its clients were told): keep it as a dead
        letter, with what it takes to run it again, and forget the live job."""
        more = job.extras()
        job.function.dead += 1
        outcome = Outcome(job.handle, job.function.name, job.unique, state,
                          reason[:MAX_REASON_BYTES], more.retries, job.submitted,
                          job.started, self.clock(), True, job.data, job.priority,
                          more.reducer, list(more.reasons or ()))
        self._note(logging.WARNING,
                   f"job {self._name(job)} is a dead letter after {more.retries} failed "
                   f"attempt(s): {reason.decode('utf-8', 'replace')}")
        if job.stored and self.store is not None:
            self.store.remove(job)
            job.stored = False
        self._forget(job)
        self._keep(outcome)

    def _work_failed(self, job: Job, state: str, reason: bytes, reply: bytes,
                     exception: bytes) -> None:
        """A worker reported failure (WORK_FAIL, WORK_EXCEPTION): retry, bury or end.

        ``reply`` goes to clients without the exceptions option, ``exception`` (if not
        empty) to those with it. While a retry is planned, clients keep waiting."""
        self._detach(job)
        if self.timing:
            time_run(job, self.now())
        if job.background and self._retry_later(job, reason):
            return
        job.function.failed += 1
        for client in job.clients or ():
            self._send(client, exception if exception and client.exceptions else reply)
        if job.background:
            self._bury(job, DEAD if job.function.retry is not None else state, reason)
        else:
            if job.stored and self.store is not None:
                self.store.remove(job)
            self._forget(job)

    def _requeue(self, job: Job, reason: bytes) -> None:
        """A running job lost its worker (disconnect, CANT_DO, timeout): retry or drop."""
        self._detach(job)
        if job.background and job.function.retry is not None:
            if not self._retry_later(job, reason):
                job.function.failed += 1
                self._fail_clients(job)
                self._bury(job, DEAD, reason)
            return
        failures = self._count_failure(job, reason)
        limit = self.config.job_retries
        if limit and failures >= limit:
            job.function.failed += 1
            self._fail_clients(job)
            if job.background:
                self._bury(job, DEAD, reason + b"; dropped after %d attempts (-j %d)"
                           % (failures, limit))
            else:
                self._note(logging.WARNING, f"job {self._name(job)} dropped after "
                           f"{failures} attempts (-j {limit})")
                self._drop_stored(job)
                self._forget(job)
            return
        if not job.background and not job.clients:
            self._forget(job)  # nobody is waiting for it any more
            return
        job.function.retried += 1
        self._note(logging.INFO, f"job {self._name(job)} requeued: "
                   f"{reason.decode('utf-8', 'replace')}")
        if job.stored and self.store is not None:
            self.store.update(job)
        self._enqueue(job)

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: end a queued, scheduled or running job; its clients get
        WORK_FAIL (WORK_EXCEPTION "cancelled" if they asked for exceptions). A running
        job's worker is told only if it is a gearshift worker (``OPTION_REQ gearshift``):
        WORK_FAIL HANDLE, which it reads as "stop this job"; whatever any worker reports
        for it afterwards is dropped. True if cancelled."""
        job = self.jobs.get(handle)
        if job is None:
            return False
        running = job.state == RUNNING
        if running:
            self._stop_worker(job)
        elif job.state in (QUEUED, SCHEDULED):
            self._unqueue(job)
        else:
            return False
        failed = packet(P.WORK_FAIL, handle)
        cancelled = packet(P.WORK_EXCEPTION, handle, CANCELLED_REASON)
        for client in job.clients or ():
            self._send(client, cancelled if client.exceptions and running else failed)
        self._drop_stored(job)
        self._forget(job)
        if job.background or running:
            self._note(logging.INFO, f"job {self._name(job)} cancelled"
                       f"{' while running' if running else ''}")
        if job.background and self.outcomes.keep > 0:
            self._keep(Outcome(handle, job.function.name, job.unique, CANCELLED,
                               CANCELLED_REASON, job.retries, job.submitted,
                               job.started if running else 0.0, self.clock()))
        return True

    def _stop_worker(self, job: Job) -> None:
        """Take a running job from its worker for good: a gearshift worker is told to
        stop it; any worker's late reports for it will be dropped."""
        worker = job.worker
        self._detach(job)
        if worker is None or worker.closed:
            return
        late = worker.cancelled
        if late is None:
            late = worker.cancelled = set()
        late.add(job.handle)
        if worker.gearshift:
            self._send(worker, packet(P.WORK_FAIL, job.handle))

    # ------------------------------------------------------------------ dead letters

    def retry_dead(self, handle: bytes) -> bool:
        """Queue a dead letter again, under its own handle, with fresh attempts."""
        outcome = self.outcomes.dead.get(handle)
        if outcome is None or self.jobs.get(handle) is not None:
            return False
        self.outcomes.discard(handle)
        func = self.function(outcome.function)
        job = Job(func, outcome.unique, outcome.data, outcome.priority, True)
        self.jobs.add_foreign(handle, job)
        job.extras().reducer = outcome.reducer
        job.submitted = outcome.submitted
        if outcome.unique:
            index, key = func.coalescing_index(outcome.unique, outcome.data)
            if key not in index:
                index[key] = job
        self._note(logging.INFO, f"dead letter {self._name(job)} queued again")
        store = self.store
        if store is not None:
            # The dead letter leaves the store only once the job is written again
            # (persisted); if that write fails it is put back (persist_failed).
            self._revived[handle] = outcome
            job.state = PENDING
            store.add(job)
        else:
            self._enqueue(job)
        return True

    def purge_dead(self, handle: bytes) -> bool:
        """Forget a dead letter for good."""
        outcome = self.outcomes.dead.get(handle)
        if outcome is None:
            return False
        self.outcomes.discard(handle)
        if self.store is not None:
            self.store.drop_outcome(handle)
        return True

    # ------------------------------------------------------------------ schedules

    def add_schedule(self, function: bytes, unique: bytes, cron: str, data: bytes,
                     priority: int = 1, peer: Peer | None = None,
                     text: bool = False) -> Schedule:
        """Keep a recurring job (replacing one with the same function and non-empty
        unique). Raises ValueError when ``cron`` is malformed or never fires.

        ``peer`` is answered with the key -- JOB_CREATED, or ``OK KEY`` for an admin
        ``text`` command -- and with a store only once the schedule is written (as a
        background job's JOB_CREATED is): :meth:`schedule_written` releases it."""
        existing = self.schedules.find(function, unique)
        if existing is not None:
            key = existing.key
        else:
            self._schedule_seq += 1
            key = b"S:%s%d" % (self.jobs.prefix[2:], self._schedule_seq)
        schedule = Schedule(key, function, unique, cron, data, priority,
                            existing.last_fired if existing is not None else 0.0)
        self.schedules.add(schedule, self.clock())
        self._rewake()
        reply = b"OK %s\n" % key if text else created_packet(key)
        ack = self._owe(peer) if peer is not None and self.store is not None else None
        if ack is not None:
            ack.reply_ok = reply
        if self.store is not None:
            self.store.put_schedule(schedule, ack)
        elif peer is not None:
            self._send(peer, reply)
        return schedule

    def schedule_written(self, ack: Ack, key: bytes, error: str | None) -> None:
        """The store answered a held schedule write: release the reply (QUEUE_ERROR, and
        the schedule forgotten, if it failed)."""
        self._now = 0.0
        if error is None:
            self._pay(ack, ack.reply_ok)
            return
        if ack.reply_ok.startswith(b"OK"):  # an admin text command's reply
            self._pay(ack, b"ERR QUEUE_ERROR " + error.replace(" ", "+").encode() + b"\r\n")
        else:
            self._pay(ack, error_packet(ErrorCode.QUEUE_ERROR, error))
        if self.schedules.remove(key) is not None:
            self._rewake()
            if self.store is not None:
                self.store.drop_schedule(key)

    def remove_schedule(self, key: bytes) -> bool:
        if self.schedules.remove(key) is None:
            return False
        self._rewake()
        if self.store is not None:
            self.store.drop_schedule(key)
        return True

    def _fire(self, schedule: Schedule) -> None:
        """Submit a schedule's job for the slot that came."""
        if self.store is not None:
            self.store.put_schedule(schedule)  # its last_fired moved on
        if self.refusing:
            self._note(logging.INFO, f"schedule {schedule.key.decode()}: the server is "
                       "draining; this slot is skipped")
            return
        func = self.function(schedule.function)
        unique, data = schedule.unique, schedule.data
        index: dict[bytes, Job] | None = None
        if unique:
            index, key = func.coalescing_index(unique, data)
            if key in index or (func.deep and self._spilled_key(func, unique, data)):
                self._note(logging.INFO, f"schedule {schedule.key.decode()}: the previous "
                           "run is still queued or running; this slot is skipped")
                return
        limit = func.max_queue[schedule.priority]
        if limit and func.total >= limit:
            self._note(logging.WARNING, f"schedule {schedule.key.decode()}: queue full, "
                       "slot skipped")
            return
        job = Job(func, unique, data, schedule.priority, True)
        self.jobs.add(job)
        job.submitted = self.clock()
        if index is not None:
            index[key] = job
        self._note(logging.DEBUG, f"schedule {schedule.key.decode()} submitted {self._name(job)}")
        if self.store is not None:
            job.state = PENDING
            self.store.add(job)
        else:
            self._enqueue(job)

    # ------------------------------------------------------------------ timers

    def run_timers(self) -> None:
        """Fire what is due: release scheduled jobs, requeue overrunning ones, submit
        schedules' jobs, expire kept outcomes."""
        now = self._now = self.clock()
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, _, job, attempt = heapq.heappop(timers)
            if attempt == EPOCH_TIMER:
                if job.state == SCHEDULED:
                    job.function.scheduled -= 1
                    self._enqueue(job)
            elif attempt == WAKE_TIMER:
                self._check_wake(job.function)
            elif job.state == RUNNING and job.attempt == attempt:
                worker = job.worker
                limit = worker.timeouts.get(job.function, 0.0) if worker is not None else 0.0
                self._requeue(job, b"timeout after %gs" % limit)
        if self.schedules.schedules:
            for schedule in self.schedules.due(now):
                self._fire(schedule)
        if self.flow_waits:
            self._flow_timers(now)
        if self.outcomes.count:
            expired = self.outcomes.expire(now)
            if expired and self.store is not None:
                for handle in expired:
                    self.store.drop_outcome(handle)
        self._rewake()

    # ------------------------------------------------------------------ storage callbacks

    def persisted(self, job: Job) -> None:
        """The store committed ``job``: acknowledge its submitters and make it runnable."""
        self._now = 0.0  # called between reads: a new batch
        if self._revived and self._revived.pop(job.handle, None) is not None \
                and self.store is not None:
            self.store.drop_outcome(job.handle)  # a retried dead letter, now a job again
        if job.state != PENDING:
            self._joined_persisted(job)
            return
        job.stored = True
        if job.waiting:
            created = created_packet(job.handle)
            for ack in job.waiting:
                self._pay(ack, created)
            job.waiting = None
            if job.more is not None and job.more.unused():
                job.more = None
        if not self._spilled(job, -1):  # (a deep queue keeps it in the store only)
            self._activate(job)

    def persist_failed(self, job: Job, message: str) -> None:
        """The store could not write ``job``: every submitter gets QUEUE_ERROR; job gone."""
        self._now = 0.0
        err = error_packet(ErrorCode.QUEUE_ERROR, message)
        revived = self._revived.pop(job.handle, None) if self._revived else None
        if revived is not None:
            self.outcomes.add(revived)  # still in the store: the dead letter stays
        if job.waiting:
            # A foreground joiner of a job that exists without the store (a foreground
            # job a background submission joined) is still attached and will get the
            # result: it is accepted, not refused and then answered.
            created = created_packet(job.handle) if job.state != PENDING else err
            for ack in job.waiting:
                self._pay(ack, created if ack.foreground else err)
            job.waiting = None
        if job.state == PENDING:
            self._forget(job)
        elif job.state != DONE and not job.stored:
            # A foreground job a background submission tried to join: it stays what it
            # was, and goes if its clients have left meanwhile.
            job.background = False
            if not job.clients and job.state == QUEUED:
                self._unqueue(job)
                self._forget(job)

    def _joined_persisted(self, job: Job) -> None:
        """persisted() for a foreground job that background submissions joined."""
        if not job.waiting:
            return
        created = created_packet(job.handle)
        for ack in job.waiting:
            self._pay(ack, created)
        job.waiting = None
        if job.state == DONE:
            # It finished while being written; the row must not outlive it.
            if self.store is not None:
                self.store.remove(job)
        else:
            job.stored = True

    def restore(self, handle: bytes, function: bytes, unique: bytes, data: bytes,
                priority: int, when: float = 0.0, reducer: bytes = b"", retries: int = 0,
                submitted: float = 0.0, position: int = -1) -> Job:
        """Re-create a stored background job at startup, keeping its handle. With its
        store ``position`` (a replay in store order) a deep queue may leave it in the
        store (it is then returned DONE and indexed nowhere but the spill index)."""
        func = self.function(function)
        job = Job(func, unique, data, priority, True)
        more = job.extras()
        more.handle = handle
        more.reducer = reducer
        more.when = float(when)
        more.retries = retries
        job.submitted = submitted
        job.stored = True
        if position > 0 and self._spilled(job, position):
            return job
        self.jobs.add_foreign(handle, job)
        if unique:
            index, key = func.coalescing_index(unique, data)
            if key not in index:
                index[key] = job
        self._activate(job)
        return job

    def restore_outcome(self, outcome: Outcome) -> bool:
        """Keep a stored outcome at startup; False (and deleted from the store) when it
        expired while the server was down or does not fit the budget."""
        if not outcome.dead and outcome.ended + self.outcomes.keep <= self.clock():
            if self.store is not None:
                self.store.drop_outcome(outcome.handle)
            return False
        before = len(self.outcomes)
        self._keep_restored(outcome)
        self._rewake()
        return len(self.outcomes) > before

    def _keep_restored(self, outcome: Outcome) -> None:
        for old in self.outcomes.add(outcome):
            if self.store is not None:
                self.store.drop_outcome(old)

    def restore_schedule(self, schedule: Schedule) -> None:
        """Keep a stored schedule at startup; its next slot follows the last one fired."""
        self.schedules.add(schedule, self.clock())
        self._rewake()
        counter = schedule.key.replace(b".", b":").rpartition(b":")[2]
        if counter.isdigit():
            self._schedule_seq = max(self._schedule_seq, int(counter))

