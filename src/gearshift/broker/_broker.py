"""The Gearman dispatcher: every binary packet's effect on jobs, queues and workers.

No I/O happens here. Replies are appended to each :class:`Peer`'s ``out`` buffer and the
peer is listed in :attr:`Broker.dirty`; the I/O shell writes those buffers once per
batch of received data (one ``write`` per peer per batch, however many packets). Time is
read through an injected clock and timers are data (:meth:`Broker.next_deadline`,
:meth:`Broker.run_timers`), so every rule below can be tested with plain calls.

Dispatch rules (see docs/compatibility.md for where they differ from gearmand):

* Coalescing key is (function, unique); unique ``-`` means "the payload is the key";
  an empty unique never coalesces. A matching job, queued or running, absorbs the
  submission whatever its priority or background flag.
* Global priority (gearmand 2.0): a grabbing worker gets the most urgent runnable job
  among its functions; ties go round robin (the function served longest ago first);
  FIFO within a function and priority.
* A queued job wakes at most ``worker_wakeup`` sleeping workers (0 = all) that sent
  PRE_SLEEP and have not been sent a NOOP since.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Final

from gearshift.broker._admin import AdminCommands
from gearshift.broker._config import BrokerConfig, StoreHooks
from gearshift.broker._core import ADMIN_BATCH_BYTES
from gearshift.broker._model import (
    DONE,
    HIGH,
    LOW,
    NORMAL,
    PENDING,
    Function,
    Job,
    Peer,
)
from gearshift.broker._numbers import atoi as _atoi
from gearshift.broker._outcomes import EXCEPTION, FAILED
from gearshift.broker._packets import (
    WORK_COMPLETE_HEAD,
    be32,
    created_for,
    created_packet,
    error_packet,
    packet,
)
from gearshift.broker._schedules import cron_from_gearman, validate_cron
from gearshift.broker._timing import time_run
from gearshift.broker._workers import WorkerDispatch
from gearshift.protocol._spec import ARITY, MAX_UNIQUE_SIZE, ErrorCode, PacketType

P = PacketType

# The request types handle_packets tests for before its dispatch table.
_GRAB_JOB: Final = int(P.GRAB_JOB)
_GRAB_JOB_UNIQ: Final = int(P.GRAB_JOB_UNIQ)
_WORK_COMPLETE: Final = int(P.WORK_COMPLETE)
_SUBMIT_JOB: Final = int(P.SUBMIT_JOB)
_SUBMIT_JOB_BG: Final = int(P.SUBMIT_JOB_BG)
_PRE_SLEEP: Final = int(P.PRE_SLEEP)

#: Longest client id kept (gearmand truncates SET_CLIENT_ID to 127 bytes).
MAX_CLIENT_ID: Final = 127

#: Packets of one read acted on in one go (``handle_first``): a 256 KiB read of 20,000
#: small packets (~150 ms when each creates a function) waits for others in between.
BATCH_PACKETS: Final = 512

#: OPTION_REQ a gearshift client or worker sends to learn that the server is gearshift.
GEARSHIFT_OPTION: Final = b"gearshift"

#: What a submission is told while the server drains (admin ``drain``).
DRAINING: Final = "the server is draining: it accepts no new jobs"

#: Why a WORK_FAIL failed, in outcomes and dead letters (the packet carries no reason).
WORK_FAIL_REASON: Final = b"the worker reported failure (WORK_FAIL)"

_SUBMIT_KINDS: Final[dict[int, tuple[int, bool]]] = {
    P.SUBMIT_JOB: (NORMAL, False),
    P.SUBMIT_JOB_BG: (NORMAL, True),
    P.SUBMIT_JOB_HIGH: (HIGH, False),
    P.SUBMIT_JOB_HIGH_BG: (HIGH, True),
    P.SUBMIT_JOB_LOW: (LOW, False),
    P.SUBMIT_JOB_LOW_BG: (LOW, True),
}

__all__ = ["Broker", "BrokerConfig", "StoreHooks"]


class Broker(WorkerDispatch):
    """What every binary packet does, on top of the worker rules, the job lifecycle and
    the state (the arguments are :class:`~gearshift.broker._core.BrokerState`'s)."""

    def __init__(self, config: BrokerConfig | None = None,
                 clock: Callable[[], float] | None = None,
                 store: StoreHooks | None = None,
                 rng: random.Random | None = None) -> None:
        if clock is None:
            super().__init__(config, store=store, rng=rng)
        else:
            super().__init__(config, clock, store, rng)
        self._dispatch: dict[int, Callable[[Peer, list[bytes]], None]] = self._build_dispatch()
        self._arity = [ARITY.get(i, 0) for i in range(max(ARITY) + 1)]
        self._admin = AdminCommands(self)

    # ------------------------------------------------------------------ input

    def handle_packets(self, peer: Peer, packets: list[tuple[int, list[bytes]]]) -> None:
        """Apply a batch of parsed packets from one peer, in order.

        The packets of every job (submit, grab, complete, sleep) are tested for first and
        their handlers called directly; the rest go through the dispatch table. Compiled,
        a direct call is a C call, where a table entry is a Python-level call with its
        argument parsing (measured: benchmarks/dispatch_bench.py 2.0 -> 1.85 us per job).
        """
        if peer.backlog is not None:  # an earlier batch is still waiting: it goes first
            peer.backlog.extend(packets)
            return
        dispatch = self._dispatch
        arity = self._arity
        # Nothing awaits a flush: a new moment, the clock is read again when needed.
        # With peers dirty, a flush is due in this loop iteration (take_dirty starts the
        # next moment), so the reads of one iteration share a reading (BrokerState.now).
        self._now = self._now if self.dirty else 0.0
        for ptype, fields in packets:
            if peer.closed:
                return
            if ptype <= 0:
                if ptype == 0:
                    self._admin_lines(peer, packets)  # this line and all after it
                    return
                else:  # WRONG_MAGIC: a well-framed packet with the response magic
                    self._send(peer, error_packet(ErrorCode.INVALID_MAGIC,
                                                  "Request magic expected"))
                continue
            if len(fields) < arity[ptype]:  # only a split with too few NULs can be short
                self._drop_short(peer, ptype, len(fields))
                return
            if ptype == _GRAB_JOB:
                self._grab_job(peer, fields)
            elif ptype == _WORK_COMPLETE:
                self._work_complete(peer, fields)
            elif ptype == _SUBMIT_JOB:
                self._submit(peer, fields[0], fields[1], fields[2], NORMAL, False)
            elif ptype == _SUBMIT_JOB_BG:
                self._submit(peer, fields[0], fields[1], fields[2], NORMAL, True)
            elif ptype == _PRE_SLEEP:
                self._pre_sleep(peer, fields)
            elif ptype == _GRAB_JOB_UNIQ:
                self._grab_job_uniq(peer, fields)
            else:
                handler = dispatch.get(ptype)
                if handler is None:
                    self._send(peer, error_packet(ErrorCode.INVALID_COMMAND,
                                                  "Command not expected"))
                else:
                    handler(peer, fields)

    def _admin_lines(self, peer: Peer, packets: list[tuple[int, list[bytes]]]) -> None:
        """Act on ``packets`` from their first admin line on, one at a time, stopping
        when ``ADMIN_BATCH_BYTES`` of replies wait for the peer or a reply is a listing
        made a piece at a time (``peer.listing``). The rest becomes ``peer.backlog`` and
        the peer goes on ``stalled``: the I/O shell stops reading it, writes, and calls
        :meth:`resume` once the replies drained (3,000 pipelined ``show jobs`` are never
        held at once). Only batches with admin lines come here."""
        i = 0
        n = len(packets)
        while packets[i][0] != 0:
            i += 1
        while i < n:
            if peer.closed:
                return
            ptype, fields = packets[i]
            i += 1
            if ptype == 0:
                self._admin.handle_line(peer, fields[0])
                if peer.listing is not None or (
                        i < n and sum(len(chunk) for chunk in peer.out) > ADMIN_BATCH_BYTES):
                    peer.backlog = packets[i:]  # [] when none: later reads wait too
                    self.stalled.append(peer)
                    return
            else:
                self.handle_packets(peer, [(ptype, fields)])

    def handle_first(self, peer: Peer, packets: list[tuple[int, list[bytes]]]) -> None:
        """A read of more than ``BATCH_PACKETS`` packets: that many now, the rest as a
        backlog that :meth:`resume` takes on in later loop iterations (as admin lines)."""
        self.handle_packets(peer, packets[:BATCH_PACKETS])
        if peer.closed:
            return
        rest = packets[BATCH_PACKETS:]
        if peer.backlog is not None:  # stopped by admin replies: the rest waits behind
            peer.backlog.extend(rest)
        else:
            peer.backlog = rest
            self.stalled.append(peer)

    def resume(self, peer: Peer) -> None:
        """Go on with what a stopped batch left: the next piece of a listing (stopping
        again until it is done; broker/_listing.py), then the backlog's packets."""
        listing = peer.listing
        if listing is not None:
            if peer.closed:
                peer.listing = None
                return
            self._send(peer, listing.more(ADMIN_BATCH_BYTES))
            if not listing.done:
                self.stalled.append(peer)
                return
            peer.listing = None
        packets = peer.backlog
        peer.backlog = None
        if packets and not peer.closed:
            if len(packets) > BATCH_PACKETS:
                self.handle_first(peer, packets)
            else:
                self.handle_packets(peer, packets)

    def _drop_short(self, peer: Peer, ptype: int, got: int) -> None:
        """A packet with too few NUL-separated fields: drop the connection, no reply.

        gearmand (1.1.20, ``gear/protocol.cc``) looks for the missing NULs past the end of
        the body: it waits for more bytes, takes the next packet's first bytes as the
        missing argument (its ``\\0REQ`` magic supplies the NUL), its remaining body size
        wraps below zero, the allocation fails and the connection is closed -- or, for a
        type without a data blob, it never answers again. Either way the peer sees no
        reply and a dead connection, and a worker's jobs are requeued. We close at once
        rather than after the next packet. The classic case is Perl's Gearman::Worker,
        which sends WORK_COMPLETE, WORK_DATA or WORK_WARNING with a false result ("" or
        "0") as the bare handle: it treats a closed connection as retryable (it
        reconnects), but an ERROR packet as fatal -- the worker process died, and the
        suite's next test hung.
        """
        self._note(logging.INFO,
                   f"closing {peer.host}:{peer.port}: {P(ptype).name} needs "
                   f"{self._arity[ptype]} NUL-separated fields, got {got}")
        self.disconnect(peer)
        self.hangups.append(peer)

    def handle(self, peer: Peer, ptype: int, *fields: bytes) -> None:
        """Apply one packet (convenience for tests and tools)."""
        self.handle_packets(peer, [(ptype, list(fields))])

    def _build_dispatch(self) -> dict[int, Callable[[Peer, list[bytes]], None]]:
        """Handlers of every packet type handle_packets does not call directly (GRAB_JOB,
        GRAB_JOB_UNIQ, WORK_COMPLETE, PRE_SLEEP, SUBMIT_JOB and SUBMIT_JOB_BG are)."""
        table: dict[int, Callable[[Peer, list[bytes]], None]] = {
            P.CAN_DO: self._can_do,
            P.CAN_DO_TIMEOUT: self._can_do_timeout,
            P.CANT_DO: self._cant_do,
            P.RESET_ABILITIES: self._reset_abilities,
            P.GRAB_JOB_ALL: self._grab_job_all,
            P.WORK_FAIL: self._work_fail,
            P.WORK_EXCEPTION: self._work_exception,
            P.WORK_STATUS: self._work_status,
            P.WORK_DATA: self._make_forward(P.WORK_DATA),
            P.WORK_WARNING: self._make_forward(P.WORK_WARNING),
            P.GET_STATUS: self._get_status,
            P.GET_STATUS_UNIQUE: self._get_status_unique,
            P.ECHO_REQ: self._echo,
            P.SET_CLIENT_ID: self._set_client_id,
            P.OPTION_REQ: self._option,
            P.SUBMIT_JOB_EPOCH: self._submit_epoch,
            P.SUBMIT_REDUCE_JOB: self._make_submit_reduce(background=False),
            P.SUBMIT_REDUCE_JOB_BACKGROUND: self._make_submit_reduce(background=True),
        }
        for ptype, (priority, background) in _SUBMIT_KINDS.items():
            if ptype not in (_SUBMIT_JOB, _SUBMIT_JOB_BG):
                table[ptype] = self._make_submit(priority, background)
        # SUBMIT_JOB_SCHED keeps a schedule (gearmand answers ERROR); ALL_YOURS is
        # rejected as gearmand does: no handler.
        table[P.SUBMIT_JOB_SCHED] = self._submit_sched
        return table

    # ------------------------------------------------------------------ submission

    def _make_submit(self, priority: int, background: bool) -> Callable[[Peer, list[bytes]], None]:
        def submit(peer: Peer, fields: list[bytes]) -> None:
            self._submit(peer, fields[0], fields[1], fields[2], priority, background)

        return submit

    def _int_field(self, peer: Peer, raw: bytes, what: str) -> int | None:
        """``raw`` as an integer, or None after answering ERROR INVALID_ARGUMENT.

        gearmand reads junk as 0 without a word; a clear error is kinder (a deliberate
        difference, docs/compatibility.md).
        """
        try:
            return int(raw)
        except ValueError:
            self._send(peer, error_packet(ErrorCode.INVALID_ARGUMENT, f"{what} is not an integer"))
            return None

    def _submit_epoch(self, peer: Peer, fields: list[bytes]) -> None:
        when = self._int_field(peer, fields[2], "SUBMIT_JOB_EPOCH time")
        if when is not None:
            self._submit(peer, fields[0], fields[1], fields[3], NORMAL, True, when=when)

    def _make_submit_reduce(self, background: bool) -> Callable[[Peer, list[bytes]], None]:
        def submit_reduce(peer: Peer, fields: list[bytes]) -> None:
            # FUNC, UNIQ, REDUCER, AGGREGATE (sent empty by libgearman; ignored), DATA
            self._submit(peer, fields[0], fields[1], fields[4], NORMAL, background,
                         reducer=fields[2])

        return submit_reduce

    def _submit_sched(self, peer: Peer, fields: list[bytes]) -> None:
        """SUBMIT_JOB_SCHED: FUNC, UNIQ, minute, hour, day of month, month, day of week
        (0 = Monday), DATA. Keeps a schedule and answers JOB_CREATED with its key once
        it is stored."""
        if self.refusing:
            self._send(peer, error_packet(ErrorCode.QUEUE_ERROR, DRAINING))
            return
        try:
            cron = cron_from_gearman(*fields[2:7])
            validate_cron(cron, self.clock())
        except ValueError as exc:
            self._send(peer, error_packet(ErrorCode.INVALID_ARGUMENT, str(exc)))
            return
        self.add_schedule(fields[0], fields[1], cron, fields[7], peer=peer)

    def _submit(self, peer: Peer, name: bytes, unique: bytes, data: bytes,  # noqa: C901
                priority: int, background: bool, when: int = 0, reducer: bytes = b"") -> None:
        # (one function on purpose: every submission runs it; the rare cases call out)
        if (len(unique) > MAX_UNIQUE_SIZE or self.refusing or peer.rights is not None) \
                and self._refused(peer, name, unique):
            return
        # Submissions tend to repeat a function: comparing with the last one's name is a
        # memcmp, where the dict lookup hashes the freshly parsed name every time.
        func = self._last_function
        if func is None or func.name != name:
            func = self._last_function = self.function(name)
        index: dict[bytes, Job] | None = None
        if unique:
            # Function.coalescing_index, inlined: this runs per submission.
            if unique == b"-":
                index, key = func.payloads, data
            else:
                index, key = func.uniques, unique
            existing = index.get(key)
            if existing is not None:
                self._coalesce_onto(peer, existing, background)
                return
            if func.deep and self._join_spilled(peer, func, unique, data, priority,
                                                background, when, reducer):
                return  # a spilled job may have the key: answered once it is read back
        limit = func.max_queue[priority]
        if ((limit and func.total >= limit) or self.max_memory) \
                and self._full(peer, func, priority, data):
            return
        job = Job(func, unique, data, priority, background)
        func.submitted += 1
        seq = self.jobs.add(job)
        if background or self.timing or self.trace:
            self._submitted(job, peer)
        if reducer or when:
            more = job.extras()
            more.reducer = reducer
            more.when = float(when)
        if index is not None:
            index[key] = job
        if background and self.store is not None:
            job.state = PENDING
            job.extras().waiting = [self._owe(peer)]
            self.store.add(job)
            return
        if background:
            # Written straight into the packet: nothing needs the handle again until a
            # worker is given the job.
            created = created_for(func.handle_prefix, seq)
        else:
            more = job.extras()
            more.clients = [peer]
            handle = more.handle = job.handle  # JOB_ASSIGN and the work results need it
            created = more.created = created_packet(handle)
            peer.attached.add(job)
        if not peer.out:
            self.dirty.append(peer)
        peer.out.append(created)
        if when:
            self._activate(job)
        else:
            self._enqueue(job)

    def _refused(self, peer: Peer, name: bytes, unique: bytes) -> bool:
        """A submission the server will not take from this peer (told with an ERROR):
        a unique key too long, drain mode, or --acl."""
        if len(unique) > MAX_UNIQUE_SIZE:
            self._send(peer, error_packet(ErrorCode.ARGUMENT_TOO_LARGE, "Unique value too large"))
            return True
        if self.refusing:
            self._send(peer, error_packet(ErrorCode.QUEUE_ERROR, DRAINING))
            return True
        rights = peer.rights
        if rights is not None and not rights.may_submit(name):
            self._send(peer, error_packet(ErrorCode.PERMISSION_DENIED, "may not submit to "
                                          + name.decode("utf-8", "replace")))
            return True
        return False
    def _full(self, peer: Peer, func: Function, priority: int, data: bytes) -> bool:
        """No room for a new job: its function's maxqueue, or --max-memory."""
        limit = func.max_queue[priority]
        if limit and func.total >= limit:
            self._send(peer, error_packet(ErrorCode.QUEUE_ERROR, "Job queue is full"))
            return True
        budget = self.max_memory
        if budget and self.jobs.payload_bytes + len(data) > budget:
            self._send(peer, error_packet(ErrorCode.QUEUE_ERROR,
                                          "Memory for queued jobs is full (--max-memory)"))
            return True
        return False

    def _coalesce_onto(self, peer: Peer, job: Job, background: bool) -> None:
        more = job.more
        if not background:
            more = job.extras()
            if more.clients is None:
                more.clients = [peer]
            else:
                more.clients.append(peer)
            peer.attached.add(job)
        elif not job.background and self.store is not None:
            # A background submission joins a foreground job. With a durable store its
            # JOB_CREATED must mean "stored" (gearmand's memory semantics, kept without a
            # store, lose it when the foreground client leaves): the job outlives its
            # clients and is written first; persisted() answers this submitter.
            job.background = True
            if job.waiting is None:
                job.waiting = [self._owe(peer)]
            else:
                job.waiting.append(self._owe(peer))
            self.store.add(job)
            return
        if job.state == PENDING or job.waiting:
            if job.waiting is None:
                job.waiting = [self._owe(peer, not background)]
            else:
                job.waiting.append(self._owe(peer, not background))
        else:
            # _send, inlined (the submitter is live: it just sent this packet).
            out = peer.out
            if not out:
                self.dirty.append(peer)
            out.append(more.created if more is not None and more.created
                       else created_packet(job.handle))

    # ------------------------------------------------------------------ work results

    def _held_job(self, peer: Peer, handle: bytes,
                  missing: str = "Job given in work result not found",
                  final: bool = False) -> Job | None:
        """The job ``peer`` is running under ``handle``, or None after an ERROR reply
        (or, for a job cancelled while it ran, after nothing).

        ``missing`` is gearmand's text for the packet at hand (it has three); ``final``
        says the packet ends the job (WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION).
        """
        job = peer.assigned
        if job is not None and job.worker is peer and peer.assigned_handle == handle:
            # The usual worker reports on the job it was given last: no table lookup
            # (job.worker is peer exactly while the job is in peer.held).
            return job
        found = self.jobs.get(handle)
        if found is None or found.worker is not peer:
            late = peer.cancelled
            if late is not None and handle in late:
                # Cancelled while this worker ran it: what it still says is dropped
                # without an ERROR (a third-party worker never learnt of the cancel).
                if final:
                    late.discard(handle)
                return None
            self._send(peer, error_packet(ErrorCode.JOB_NOT_FOUND, missing))
            return None
        return found

    def _work_complete(self, peer: Peer, fields: list[bytes]) -> None:  # noqa: C901
        # (one function on purpose: the once-per-job path, inlined; see _finish)
        job = self._held_job(peer, fields[0], final=True)
        if job is None:
            return
        more = job.more
        clients = more.clients if more is not None else None
        if clients:
            handle, result = fields
            size = be32(len(handle) + 1 + len(result))
            dirty = self.dirty
            if len(clients) == 1:
                # The usual case: append the pieces, copying the result once.
                client = clients[0]
                if not client.closed:
                    out = client.out
                    if not out:
                        dirty.append(client)
                    out.append(b"%s%s%s\0" % (WORK_COMPLETE_HEAD, size, handle))
                    out.append(result)
            else:
                pkt = b"".join((WORK_COMPLETE_HEAD, size, handle, b"\0", result))
                for client in clients:
                    if not client.closed:
                        if not client.out:
                            dirty.append(client)
                        client.out.append(pkt)
        # _finish(), inlined: this runs once per job.
        peer.held.discard(job)
        job.worker = None
        func = job.function
        func.running -= 1
        func.completed += 1
        if func.blocked:  # a limit held its jobs back: one may go now
            self._reflow(func)
        if job.stored and self.store is not None:
            self.store.remove(job)
        job.state = DONE
        self.jobs.remove(job)
        if job.unique:
            self._unindex(job)
        if clients:
            for client in clients:
                client.attached.discard(job)
        if self.timing:
            time_run(job, self.now())
        if job.background or self.trace:
            self._completed(job, fields[0], fields[1])

    def _work_fail(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._held_job(peer, fields[0], final=True)
        if job is None:
            return
        self._work_failed(job, FAILED, WORK_FAIL_REASON, packet(P.WORK_FAIL, fields[0]), b"")

    def _work_exception(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._held_job(peer, fields[0],
                             "An exception was received for a job that does not exist",
                             final=True)
        if job is None:
            return
        # Clients that did not ask for exceptions get a plain WORK_FAIL. gearmand sends
        # "HANDLE\0" (the exception's field separator left on), which Perl's
        # Gearman::Client and python-gearman cannot match to their task: a deliberate
        # difference (docs/compatibility.md).
        self._work_failed(job, EXCEPTION, fields[1] or b"WORK_EXCEPTION with no text",
                          packet(P.WORK_FAIL, fields[0]),
                          packet(P.WORK_EXCEPTION, fields[0], fields[1]))

    def _work_status(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._held_job(peer, fields[0])
        if job is None:
            return
        more = job.extras()
        more.numerator = _atoi(fields[1])
        more.denominator = _atoi(fields[2])
        pkt = packet(P.WORK_STATUS, *fields)
        for client in job.clients or ():
            self._send(client, pkt)

    def _make_forward(self, ptype: int) -> Callable[[Peer, list[bytes]], None]:
        """WORK_DATA / WORK_WARNING: pass to every attached client, keep nothing."""

        def forward(peer: Peer, fields: list[bytes]) -> None:
            job = self._held_job(peer, fields[0], "Job does not exist on server")
            if job is None:
                return
            pkt = packet(ptype, fields[0], fields[1])
            for client in job.clients or ():
                self._send(client, pkt)

        return forward

    # ------------------------------------------------------------------ status & misc

    def _echo(self, peer: Peer, fields: list[bytes]) -> None:
        self._send(peer, packet(P.ECHO_RES, fields[0]))

    def _set_client_id(self, peer: Peer, fields: list[bytes]) -> None:
        peer.client_id = fields[0][:MAX_CLIENT_ID] or b"-"

    def _option(self, peer: Peer, fields: list[bytes]) -> None:
        name = fields[0]
        lowered = name.lower()
        if lowered == b"exceptions":
            peer.exceptions = True
            self._send(peer, packet(P.OPTION_RES, name))
        elif lowered == GEARSHIFT_OPTION:
            # A gearshift library announcing itself (and learning that the server is
            # gearshift): gearmand answers ERROR UNKNOWN_OPTION, so extensions stay off.
            peer.gearshift = True
            self._send(peer, packet(P.OPTION_RES, name))
        else:
            self._send(peer, error_packet(ErrorCode.UNKNOWN_OPTION,
                                          "Server does not recognize given option"))
