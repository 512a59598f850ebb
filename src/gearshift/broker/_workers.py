"""Workers: what they can do, when they sleep and are woken, which job each one gets.

:class:`WorkerDispatch` holds the rules a worker's packets follow -- CAN_DO and its
timeout, CANT_DO, RESET_ABILITIES, PRE_SLEEP, the GRAB_JOB family -- and the choice of
the job to hand out: global priority first, then round robin over the worker's
functions (gearmand 2.0), FIFO within a function and priority. See
docs/architecture.md ("Dispatch data structures") for why the scans are shaped so.
"""

from __future__ import annotations

import heapq
from typing import Final

from gearshift.broker._deep import DeepQueues
from gearshift.broker._model import HIGH, LOW, QUEUED, RUNNING, Function, Job, Peer
from gearshift.broker._numbers import atoi as _atoi
from gearshift.broker._packets import (
    JOB_ASSIGN_HEAD,
    NO_JOB_PACKET,
    NOOP_PACKET,
    be32,
    error_packet,
    packet,
)
from gearshift.broker._timing import time_wait
from gearshift.protocol._spec import ErrorCode, PacketType

P = PacketType

#: CAN_DO_TIMEOUT values below this many milliseconds are raised to it (gearmand does too).
MIN_TIMEOUT_MS: Final = 1000


class WorkerDispatch(DeepQueues):
    """Worker registration, sleep and wake-up, and job selection (no I/O)."""

    def _register(self, peer: Peer, name: bytes) -> Function:
        func = self.function(name)
        if func not in peer.functions:
            self._rr += 1
            peer.functions[func] = self._rr
            peer.functions_changed()
            func.workers[peer] = None
            if peer.sleeping and not peer.noop_sent:
                func.sleepers.append((peer, peer.sleep_epoch))
        return func

    def _can_do(self, peer: Peer, fields: list[bytes]) -> None:
        if peer.rights is not None and not self._may_work(peer, fields[0]):
            return
        func = self._register(peer, fields[0])
        peer.timeouts.pop(func, None)

    def _may_work(self, peer: Peer, name: bytes) -> bool:
        """--acl: may this peer register ``name``? If not it is told, and not registered."""
        rights = peer.rights
        if rights is None or rights.may_work(name):
            return True
        self._send(peer, error_packet(ErrorCode.PERMISSION_DENIED,
                                      f"may not work on {name.decode('utf-8', 'replace')}"))
        return False

    def _can_do_timeout(self, peer: Peer, fields: list[bytes]) -> None:
        # Read like gearmand (atoi, junk is 0 = no timeout, no reply): npm's `gearman`
        # sends the timeout as a 4-byte binary integer, and its workers must still get jobs.
        if peer.rights is not None and not self._may_work(peer, fields[0]):
            return
        millis = _atoi(fields[1])
        func = self._register(peer, fields[0])
        if millis > 0:
            peer.timeouts[func] = max(millis, MIN_TIMEOUT_MS) / 1000.0
        else:
            peer.timeouts.pop(func, None)

    def _unregister(self, peer: Peer, func: Function) -> None:
        del peer.functions[func]
        peer.functions_changed()
        func.workers.pop(peer, None)
        peer.timeouts.pop(func, None)
        for job in [j for j in peer.held if j.function is func]:
            self._requeue(job, b"the worker stopped doing the function (CANT_DO)")
        if peer.noop_sent:
            self._pass_wakeup((func,))

    def _cant_do(self, peer: Peer, fields: list[bytes]) -> None:
        func = self.functions.get(fields[0])
        if func is not None and func in peer.functions:
            self._unregister(peer, func)

    def _reset_abilities(self, peer: Peer, fields: list[bytes]) -> None:
        for func in list(peer.functions):
            self._unregister(peer, func)

    def _has_job_for(self, peer: Peer) -> bool:
        funcs = peer.functions
        if self.draining or (self.lease_until != 0.0 and self.now() >= self.lease_until):
            return False
        for ready in self.ready:
            if not ready:
                continue
            if len(funcs) <= len(ready):
                if any(f in ready for f in funcs):
                    return True
            elif any(f in funcs for f in ready):
                return True
        return False

    def _pre_sleep(self, peer: Peer, fields: list[bytes]) -> None:
        peer.sleeping = True
        if self._has_job_for(peer):
            peer.noop_sent = True
            peer.urgent = True
            self._send(peer, NOOP_PACKET)
            return
        peer.noop_sent = False
        peer.sleep_epoch += 1
        entry = (peer, peer.sleep_epoch)
        for func in peer.functions:
            sleepers = func.sleepers
            sleepers.append(entry)
            if len(sleepers) > 4 * len(func.workers) + 64:
                self._compact_sleepers(func)

    def _take(self, peer: Peer) -> Job | None:
        """Pick and dequeue the job ``peer`` should run next, or None."""
        funcs = peer.functions
        if not funcs or self.draining:
            return None
        lease_until = self.lease_until  # 0.0 unless the store is shared by servers
        if lease_until != 0.0 and self.now() >= lease_until:
            return None
        # The usual worker does one function: no round robin to weigh.
        only = peer.only
        for prio in range(HIGH, LOW + 1):  # a C loop when compiled; a tuple was iterated
            ready = self.ready[prio]
            if not ready:
                continue
            if only is not None:
                best = only if only in ready else None
            else:
                best = self._pick(peer, ready)
            if best is None:
                continue
            queue = best.queues[prio]
            job = queue.popleft()
            while job.state != QUEUED:
                job = queue.popleft()
            left = best.queued[prio] - 1
            best.queued[prio] = left
            if not left:
                del ready[best]
                queue.clear()
            if best.deep:  # some of its jobs are only in the store: read ahead (_deep)
                self._low(best, prio)
            # The one flow-control test a job start pays (limits, weights: _core).
            if best.flow is not None and self._flow_started(best):
                return job
            # Round robin (gearmand 2.0; `priority_two_functions` in the differential
            # tests): the function just served goes behind the others at every priority
            # where it still waits, so the scan in _pick cannot starve them, and after
            # a's HIGH job b's NORMAL one comes before a's.
            for waiting in self.ready:
                if len(waiting) > 1 and best in waiting:
                    del waiting[best]
                    waiting[best] = None
            return job
        return None

    def lease_renewed(self, until: float) -> None:
        """The shared store's lease holds until ``until`` (clock time); after a lapse,
        wake the workers of every function with queued jobs, which were told NO_JOB."""
        lapsed = self.lease_until != 0.0 and self.clock() >= self.lease_until
        self.lease_until = until
        if lapsed:
            for ready in self.ready:
                for func in list(ready):
                    self._wake(func)

    def _pick(self, peer: Peer, ready: dict[Function, None]) -> Function | None:
        """Which of a multi-function worker's functions with jobs at one priority to serve.

        First the ready functions in ``ready``'s order, which rotates (a served function
        that still has jobs moves to the back): the first one the worker can do wins.
        That is round robin over the functions, and when the worker can do the ready
        ones (the usual case) it costs one lookup. The scan stops after as many entries
        as the worker has functions, so a worker with a few functions behind thousands
        of ready ones it cannot do does not pay for them; then its own functions are
        scanned for the ready one it was served least recently, which keeps its round
        robin fair there too. (Scanning the worker's functions first, as until
        2026-12-01, cost a lookup per function per grab: dispatch_bench with 10
        functions spent 3,179 of its 16,980 instructions per job here.)
        """
        funcs = peer.functions
        budget = len(funcs)
        for func in ready:
            if func in funcs:
                return func
            budget -= 1
            if budget == 0:
                break
        else:
            return None  # every ready function was looked at: none is the worker's
        best: Function | None = None
        best_seq = -1
        for func, seq in funcs.items():
            if (best is None or seq < best_seq) and func in ready:
                best, best_seq = func, seq
        if best is not None:
            # Served last, preferred last. Only this scan reads the numbers, so only it
            # stamps them (stamping every grab was a dict write and a boxed int each).
            self._rr += 1
            funcs[best] = self._rr
        return best

    def _assign(self, peer: Peer, job: Job) -> None:
        if self.trace:
            self._trace(job, f"assigned to {peer.host}:{peer.port}")
        job.state = RUNNING
        job.worker = peer
        peer.assigned = job
        peer.assigned_handle = job.handle
        peer.urgent = True  # the JOB_ASSIGN the caller queues
        # The attempt number only matters to a timeout timer, which creates the extras;
        # from then on every assignment counts, so a stale timer can tell.
        more = job.more
        if more is not None:
            more.attempt += 1
        peer.held.add(job)
        func = job.function
        func.running += 1
        if job.background or self.timing:
            job.started = self.now()
            if self.timing:
                time_wait(job)
        timeout = peer.timeouts.get(func) if peer.timeouts else None
        if timeout is not None:
            if more is None:
                more = job.extras()
                more.attempt = 1
            heapq.heappush(self.timers, (self.clock() + timeout, next(self._timer_seq), job,
                                         more.attempt))

    def _grab(self, peer: Peer) -> Job | None:
        peer.sleeping = False
        peer.noop_sent = False
        job = self._take(peer)
        if job is None:
            self._send(peer, NO_JOB_PACKET)
            return None
        self._assign(peer, job)
        return job

    def _grab_job(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._grab(peer)
        if job is not None:
            # Queued piece by piece, the payload by reference: the flush's join is the
            # only copy of it (building the body first copied it twice more: measured
            # with a 4 KiB payload in benchmarks/dispatch_bench.py).
            handle, name, data = peer.assigned_handle, job.function.name, job.data
            out = peer.out
            if not out:
                self.dirty.append(peer)
            size = len(handle) + len(name) + len(data) + 2
            # One %-format is one allocation (mypyc builds it in C); each + was another.
            out.append(b"%s%s%s\0%s\0" % (JOB_ASSIGN_HEAD, be32(size), handle,
                                            name))
            out.append(data)

    def _grab_job_uniq(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._grab(peer)
        if job is not None:
            self._send(peer, packet(P.JOB_ASSIGN_UNIQ, peer.assigned_handle,
                                    job.function.name, job.unique, job.data))

    def _grab_job_all(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._grab(peer)
        if job is None:
            return
        if job.reducer:
            self._send(peer, packet(P.JOB_ASSIGN_ALL, job.handle, job.function.name,
                                    job.unique, job.reducer, job.data))
        else:
            self._send(peer, packet(P.JOB_ASSIGN_UNIQ, job.handle, job.function.name,
                                    job.unique, job.data))
