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

import heapq
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from gearshift._version import __version__
from gearshift.broker._jobs import JobTable
from gearshift.broker._model import (
    DONE,
    HIGH,
    LOW,
    NORMAL,
    PENDING,
    QUEUED,
    RUNNING,
    SCHEDULED,
    Ack,
    Function,
    Job,
    Peer,
)
from gearshift.broker._numbers import atoi as _atoi
from gearshift.protocol._spec import ARITY, MAX_UNIQUE_SIZE, RES, ErrorCode, PacketType

P = PacketType


def _prefix(ptype: int) -> bytes:
    """The first 8 header bytes of a server->client packet: magic and type."""
    return RES + int(ptype).to_bytes(4, "big")


# Header prefixes of the replies sent for every job, bound once: the size follows as
# ``_be32(len(body))`` (an enum attribute or a struct.pack call here cost a Python-level
# lookup and call per reply).
_JOB_CREATED_HEAD: Final = _prefix(P.JOB_CREATED)
_JOB_ASSIGN_HEAD: Final = _prefix(P.JOB_ASSIGN)
_WORK_COMPLETE_HEAD: Final = _prefix(P.WORK_COMPLETE)
_ERROR: Final = int(P.ERROR)
# The request types handle_packets tests for before its dispatch table.
_GRAB_JOB: Final = int(P.GRAB_JOB)
_GRAB_JOB_UNIQ: Final = int(P.GRAB_JOB_UNIQ)
_WORK_COMPLETE: Final = int(P.WORK_COMPLETE)
_SUBMIT_JOB: Final = int(P.SUBMIT_JOB)
_SUBMIT_JOB_BG: Final = int(P.SUBMIT_JOB_BG)
_PRE_SLEEP: Final = int(P.PRE_SLEEP)

NOOP_PACKET: Final = _prefix(P.NOOP) + bytes(4)
NO_JOB_PACKET: Final = _prefix(P.NO_JOB) + bytes(4)

#: CAN_DO_TIMEOUT values below this many milliseconds are raised to it (gearmand does too).
MIN_TIMEOUT_MS: Final = 1000

#: Longest client id kept (gearmand truncates SET_CLIENT_ID to 127 bytes).
MAX_CLIENT_ID: Final = 127

_EPOCH_TIMER: Final = -1  # attempt marker of a timer entry that releases a scheduled job


#: Body sizes below this are encoded from a table built at import (~360 KiB measured).
_SIZE_TABLE_LIMIT: Final = 8192
_SIZE_TABLE: Final = tuple(n.to_bytes(4, "big") for n in range(_SIZE_TABLE_LIMIT))


def _be32(size: int) -> bytes:
    """``size.to_bytes(4, "big")``, the body length of a reply header. Compiled,
    ``to_bytes`` builds a Python int and calls into CPython's converter (~240
    instructions per reply, three replies per sync job: callgrind, dispatch_bench); the
    sizes of almost every reply (handles, names, small payloads) come from the table."""
    if size < _SIZE_TABLE_LIMIT:
        return _SIZE_TABLE[size]
    return size.to_bytes(4, "big")


def packet(ptype: int, *fields: bytes) -> bytes:
    """Encode one server->client packet."""
    body = b"\0".join(fields)
    return RES + ptype.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


def _created_packet(handle: bytes) -> bytes:
    """JOB_CREATED for ``handle``. One %-format is one allocation when compiled (mypyc
    builds it in C); each ``+`` was another."""
    return b"%s%s%s" % (_JOB_CREATED_HEAD, _be32(len(handle)), handle)


def error_packet(code: bytes, text: str) -> bytes:
    return packet(_ERROR, code, text.encode())


class StoreHooks(Protocol):
    """What the broker asks of durable storage; the I/O shell implements it.

    ``add`` must eventually be answered by :meth:`Broker.persisted` or
    :meth:`Broker.persist_failed`; ``remove`` and ``retries`` are fire-and-forget
    (ordered after the add by the group committer).
    """

    def add(self, job: Job) -> None: ...
    def remove(self, job: Job) -> None: ...
    def retries(self, job: Job) -> None: ...


@dataclass(slots=True)
class BrokerConfig:
    """Dispatch settings, mostly named after gearmand's options.

    Attributes:
        job_retries: ``-j``: drop a job (WORK_FAIL to its clients) once it has been
            handed out this many times without finishing; 0 = unlimited (gearmand's
            released behaviour).
        worker_wakeup: ``-w``: sleeping workers NOOPed per queued job; 0 = all.
        exceptions: ``--exceptions``: every connection starts with the option on.
        handle_prefix: job handles are ``<prefix><counter>``.
        allow_shutdown: whether the admin ``shutdown`` command is honoured.
    """

    job_retries: int = 0
    worker_wakeup: int = 1
    exceptions: bool = False
    handle_prefix: bytes = b"H:gearshift:"
    allow_shutdown: bool = False
    verbose: str = "ERROR"
    version: str = __version__
    pid: int = 0


_SUBMIT_KINDS: Final[dict[int, tuple[int, bool]]] = {
    P.SUBMIT_JOB: (NORMAL, False),
    P.SUBMIT_JOB_BG: (NORMAL, True),
    P.SUBMIT_JOB_HIGH: (HIGH, False),
    P.SUBMIT_JOB_HIGH_BG: (HIGH, True),
    P.SUBMIT_JOB_LOW: (LOW, False),
    P.SUBMIT_JOB_LOW_BG: (LOW, True),
}


class Broker:
    """All job-server state and the rules that change it.

    Args:
        config: dispatch settings.
        clock: wall-clock seconds (``time.time``); injected so tests control time.
        store: durable-storage hooks, or None for a memory-only server.
    """

    def __init__(self, config: BrokerConfig | None = None,
                 clock: Callable[[], float] = time.time,
                 store: StoreHooks | None = None) -> None:
        self.config = config if config is not None else BrokerConfig()
        if not self.config.pid:
            self.config.pid = os.getpid()
        self.clock = clock
        self.store = store
        self.dirty: list[Peer] = []
        self.peers: dict[int, Peer] = {}
        self.functions: dict[bytes, Function] = {}
        self._last_function: Function | None = None  # functions are never removed
        #: live jobs by handle
        self.jobs = JobTable(self.config.handle_prefix)
        # ready[p]: functions with at least one runnable job of priority p.
        self.ready: tuple[dict[Function, None], ...] = ({}, {}, {})
        self.timers: list[tuple[float, int, Job, int]] = []
        self.shutdown_request: str | None = None
        #: Set while shutting down gracefully: running jobs may finish, none are handed out.
        self.draining = False
        self._peer_ids = itertools.count(1)
        self._timer_seq = itertools.count()
        self._rr = 0  # round-robin clock: a worker's function is stamped when served
        self._gated = 0  # peers with a reply held for the store (see _owe)
        self._dispatch: dict[int, Callable[[Peer, list[bytes]], None]] = self._build_dispatch()
        self._arity = [ARITY.get(i, 0) for i in range(max(ARITY) + 1)]
        from gearshift.broker._admin import AdminCommands

        self._admin = AdminCommands(self)

    # ------------------------------------------------------------------ connections

    def connect(self, host: str = "", port: int = 0, fd: int = -1) -> Peer:
        """Register a new connection and return its peer record."""
        peer = Peer(next(self._peer_ids), host, port, fd, self.config.exceptions)
        self.peers[peer.id] = peer
        return peer

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
            self._requeue(job)
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

    def _pass_wakeup(self, funcs: Iterable[Function]) -> None:
        """A woken worker will not take the queued jobs it was NOOPed for (it left, or
        dropped the function): wake another sleeper of each of ``funcs`` with work, or
        with wake-one (-w 1) those jobs could wait for ever while capable workers sleep."""
        for func in funcs:
            if func.queued[0] or func.queued[1] or func.queued[2]:
                self._wake(func)

    # ------------------------------------------------------------------ input

    def handle_packets(self, peer: Peer, packets: list[tuple[int, list[bytes]]]) -> None:
        """Apply a batch of parsed packets from one peer, in order.

        The packets of every job (submit, grab, complete, sleep) are tested for first and
        their handlers called directly; the rest go through the dispatch table. Compiled,
        a direct call is a C call, where a table entry is a Python-level call with its
        argument parsing (measured: benchmarks/dispatch_bench.py 2.0 -> 1.85 us per job).
        """
        dispatch = self._dispatch
        arity = self._arity
        for ptype, fields in packets:
            if peer.closed:
                return
            if ptype <= 0:
                if ptype == 0:
                    self._admin.handle_line(peer, fields[0])
                else:  # WRONG_MAGIC: a well-framed packet with the response magic
                    self._send(peer, error_packet(ErrorCode.INVALID_MAGIC,
                                                  "Request magic expected"))
                continue
            if len(fields) < arity[ptype]:  # only a split with too few NULs can be short
                self._send(peer, error_packet(
                    ErrorCode.INVALID_COMMAND,
                    f"{P(ptype).name} needs {arity[ptype]} NUL-separated fields, "
                    f"got {len(fields)}",
                ))
                continue
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
        # ALL_YOURS and SUBMIT_JOB_SCHED are rejected as gearmand does: no handler.
        return table

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
        return func

    def set_handle_prefix(self, prefix: bytes) -> None:
        """Change what new job handles start with; only before the first job is created
        (a handle's number is parsed back with the prefix it was minted under)."""
        if self.jobs.minted:
            raise RuntimeError("the handle prefix cannot change once jobs were created")
        self.config.handle_prefix = prefix
        self.jobs.prefix = prefix
        for func in self.functions.values():
            func.handle_prefix = prefix

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

    def _submit(self, peer: Peer, name: bytes, unique: bytes, data: bytes, priority: int,
                background: bool, when: int = 0, reducer: bytes = b"") -> None:
        if len(unique) > MAX_UNIQUE_SIZE:
            self._send(peer, error_packet(ErrorCode.ARGUMENT_TOO_LARGE, "Unique value too large"))
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
        limit = func.max_queue[priority]
        if limit and func.total >= limit:
            self._send(peer, error_packet(ErrorCode.QUEUE_ERROR, "Job queue is full"))
            return
        job = Job(func, unique, data, priority, background)
        self.jobs.add(job)
        handle = job.handle
        if reducer or when:
            more = job.extras()
            more.reducer = reducer
            more.when = when
        if index is not None:
            index[key] = job
        if background and self.store is not None:
            job.state = PENDING
            job.extras().waiting = [self._owe(peer)]
            self.store.add(job)
            return
        created = _created_packet(handle)
        if not background:
            more = job.extras()
            more.clients = [peer]
            more.handle = handle  # JOB_ASSIGN and the work results need it again
            more.created = created
            peer.attached.add(job)
        if not peer.out:
            self.dirty.append(peer)
        peer.out.append(created)
        if when:
            self._activate(job)
        else:
            self._enqueue(job)

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
                       else _created_packet(job.handle))

    def _activate(self, job: Job) -> None:
        """Make a created job runnable now, or schedule it for its epoch time."""
        if job.when and job.when > self.clock():
            job.state = SCHEDULED
            job.function.scheduled += 1
            heapq.heappush(self.timers, (float(job.when), next(self._timer_seq), job,
                                         _EPOCH_TIMER))
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

    # ------------------------------------------------------------------ storage callbacks

    def persisted(self, job: Job) -> None:
        """The store committed ``job``: acknowledge its submitters and make it runnable."""
        if job.state != PENDING:
            self._joined_persisted(job)
            return
        job.stored = True
        if job.waiting:
            created = _created_packet(job.handle)
            for ack in job.waiting:
                self._pay(ack, created)
            job.waiting = None
        self._activate(job)

    def persist_failed(self, job: Job, message: str) -> None:
        """The store could not write ``job``: every submitter gets QUEUE_ERROR; job gone."""
        err = error_packet(ErrorCode.QUEUE_ERROR, message)
        if job.waiting:
            # A foreground joiner of a job that exists without the store (a foreground
            # job a background submission joined) is still attached and will get the
            # result: it is accepted, not refused and then answered.
            created = _created_packet(job.handle) if job.state != PENDING else err
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
        created = _created_packet(job.handle)
        for ack in job.waiting:
            self._pay(ack, created)
        job.waiting = None
        if job.state == DONE:
            # It finished while being written; the row must not outlive it.
            if self.store is not None:
                self.store.remove(job)
        else:
            job.stored = True

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

    def restore(self, handle: bytes, function: bytes, unique: bytes, data: bytes,
                priority: int, when: int = 0, reducer: bytes = b"", retries: int = 0) -> Job:
        """Re-create a stored background job at startup, keeping its handle."""
        func = self.function(function)
        job = Job(func, unique, data, priority, True)
        self.jobs.add_foreign(handle, job)
        more = job.extras()
        more.reducer = reducer
        more.when = when
        more.retries = retries
        job.stored = True
        if unique:
            index, key = func.coalescing_index(unique, data)
            if key not in index:
                index[key] = job
        self._activate(job)
        return job

    # ------------------------------------------------------------------ workers

    def _register(self, peer: Peer, name: bytes) -> Function:
        func = self.function(name)
        if func not in peer.functions:
            self._rr += 1
            peer.functions[func] = self._rr
            func.workers[peer] = None
            if peer.sleeping and not peer.noop_sent:
                func.sleepers.append((peer, peer.sleep_epoch))
        return func

    def _can_do(self, peer: Peer, fields: list[bytes]) -> None:
        func = self._register(peer, fields[0])
        peer.timeouts.pop(func, None)

    def _can_do_timeout(self, peer: Peer, fields: list[bytes]) -> None:
        # Read like gearmand (atoi, junk is 0 = no timeout, no reply): npm's `gearman`
        # sends the timeout as a 4-byte binary integer, and its workers must still get jobs.
        millis = _atoi(fields[1])
        func = self._register(peer, fields[0])
        if millis > 0:
            peer.timeouts[func] = max(millis, MIN_TIMEOUT_MS) / 1000.0
        else:
            peer.timeouts.pop(func, None)

    def _unregister(self, peer: Peer, func: Function) -> None:
        del peer.functions[func]
        func.workers.pop(peer, None)
        peer.timeouts.pop(func, None)
        for job in [j for j in peer.held if j.function is func]:
            self._requeue(job)
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
        if self.draining:
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

    def _take(self, peer: Peer) -> Job | None:
        """Pick and dequeue the job ``peer`` should run next, or None."""
        funcs = peer.functions
        if not funcs or self.draining:
            return None
        # The usual worker does one function: no round robin to weigh.
        only: Function | None = None
        if len(funcs) == 1:
            for func in funcs:  # (compiled dict iteration; next(iter()) is generic)
                only = func
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
        job.state = RUNNING
        job.worker = peer
        peer.assigned = job
        peer.urgent = True  # the JOB_ASSIGN the caller queues
        # The attempt number only matters to a timeout timer, which creates the extras;
        # from then on every assignment counts, so a stale timer can tell.
        more = job.more
        if more is not None:
            more.attempt += 1
        peer.held.add(job)
        func = job.function
        func.running += 1
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
            handle, name, data = job.handle, job.function.name, job.data
            out = peer.out
            if not out:
                self.dirty.append(peer)
            size = len(handle) + len(name) + len(data) + 2
            # One %-format is one allocation (mypyc builds it in C); each + was another.
            out.append(b"%s%s%s\0%s\0" % (_JOB_ASSIGN_HEAD, _be32(size), handle,
                                            name))
            out.append(data)

    def _grab_job_uniq(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._grab(peer)
        if job is not None:
            self._send(peer, packet(P.JOB_ASSIGN_UNIQ, job.handle, job.function.name,
                                    job.unique, job.data))

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

    def _requeue(self, job: Job) -> None:
        """A running job lost its worker (disconnect, CANT_DO, timeout): retry or drop."""
        worker = job.worker
        if worker is not None:
            worker.held.discard(job)
        job.worker = None
        job.function.running -= 1
        more = job.extras()
        more.numerator = more.denominator = 0
        more.retries += 1
        limit = self.config.job_retries
        if limit and more.retries >= limit:
            self._fail_clients(job)
            self._drop_stored(job)
            self._forget(job)
            return
        if not job.background and not job.clients:
            self._forget(job)  # nobody is waiting for it any more
            return
        if job.stored and self.store is not None:
            self.store.retries(job)
        self._enqueue(job)

    def _fail_clients(self, job: Job) -> None:
        fail = packet(P.WORK_FAIL, job.handle)
        for client in job.clients or ():
            self._send(client, fail)

    def _drop_stored(self, job: Job) -> None:
        if job.stored and self.store is not None:
            self.store.remove(job)
            job.stored = False

    # ------------------------------------------------------------------ work results

    def _held_job(self, peer: Peer, handle: bytes,
                  missing: str = "Job given in work result not found") -> Job | None:
        """The job ``peer`` is running under ``handle``, or None after an ERROR reply.

        ``missing`` is gearmand's text for the packet at hand (it has three).
        """
        job = peer.assigned
        if job is not None and job.worker is peer and job.handle == handle:
            # The usual worker reports on the job it was given last: no table lookup
            # (job.worker is peer exactly while the job is in peer.held).
            return job
        found = self.jobs.get(handle)
        if found is None or found.worker is not peer:
            self._send(peer, error_packet(ErrorCode.JOB_NOT_FOUND, missing))
            return None
        return found

    def _finish(self, job: Job) -> None:
        worker = job.worker
        if worker is not None:
            worker.held.discard(job)
        job.worker = None
        job.function.running -= 1
        if job.stored and self.store is not None:
            self.store.remove(job)
        self._forget(job)

    def _work_complete(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._held_job(peer, fields[0])
        if job is None:
            return
        more = job.more
        clients = more.clients if more is not None else None
        if clients:
            handle, result = fields
            size = _be32(len(handle) + 1 + len(result))
            dirty = self.dirty
            if len(clients) == 1:
                # The usual case: append the pieces, copying the result once.
                client = clients[0]
                if not client.closed:
                    out = client.out
                    if not out:
                        dirty.append(client)
                    out.append(b"%s%s%s\0" % (_WORK_COMPLETE_HEAD, size, handle))
                    out.append(result)
            else:
                pkt = b"".join((_WORK_COMPLETE_HEAD, size, handle, b"\0", result))
                for client in clients:
                    if not client.closed:
                        if not client.out:
                            dirty.append(client)
                        client.out.append(pkt)
        # _finish(), inlined: this runs once per job.
        peer.held.discard(job)
        job.worker = None
        job.function.running -= 1
        if job.stored and self.store is not None:
            self.store.remove(job)
        job.state = DONE
        self.jobs.remove(job)
        if job.unique:
            self._unindex(job)
        if clients:
            for client in clients:
                client.attached.discard(job)

    def _work_fail(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._held_job(peer, fields[0])
        if job is None:
            return
        self._fail_clients(job)
        self._finish(job)

    def _work_exception(self, peer: Peer, fields: list[bytes]) -> None:
        job = self._held_job(peer, fields[0],
                             "An exception was received for a job that does not exist")
        if job is None:
            return
        exc = packet(P.WORK_EXCEPTION, fields[0], fields[1])
        # Clients that did not ask for exceptions get a plain WORK_FAIL. gearmand sends
        # "HANDLE\0" (the exception's field separator left on), which Perl's
        # Gearman::Client and python-gearman cannot match to their task: a deliberate
        # difference (docs/compatibility.md).
        fail = packet(P.WORK_FAIL, fields[0])
        for client in job.clients or ():
            self._send(client, exc if client.exceptions else fail)
        self._finish(job)

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

    def _get_status(self, peer: Peer, fields: list[bytes]) -> None:
        handle = fields[0]
        job = self.jobs.get(handle)
        if job is None:
            self._send(peer, packet(P.STATUS_RES, handle, b"0", b"0", b"0", b"0"))
            return
        self._send(peer, packet(
            P.STATUS_RES, handle, b"1", b"1" if job.state == RUNNING else b"0",
            str(job.numerator).encode(), str(job.denominator).encode(),
        ))

    def _get_status_unique(self, peer: Peer, fields: list[bytes]) -> None:
        unique = fields[0]
        job = self.job_by_unique(unique)
        if job is None:
            self._send(peer, packet(P.STATUS_RES_UNIQUE, unique, b"0", b"0", b"0", b"0", b"0"))
            return
        self._send(peer, packet(
            P.STATUS_RES_UNIQUE, unique, b"1", b"1" if job.state == RUNNING else b"0",
            str(job.numerator).encode(), str(job.denominator).encode(),
            str(len(job.clients or ())).encode(),
        ))

    def _echo(self, peer: Peer, fields: list[bytes]) -> None:
        self._send(peer, packet(P.ECHO_RES, fields[0]))

    def _set_client_id(self, peer: Peer, fields: list[bytes]) -> None:
        peer.client_id = fields[0][:MAX_CLIENT_ID] or b"-"

    def _option(self, peer: Peer, fields: list[bytes]) -> None:
        name = fields[0]
        if name.lower() == b"exceptions":
            peer.exceptions = True
            self._send(peer, packet(P.OPTION_RES, name))
        else:
            self._send(peer, error_packet(ErrorCode.UNKNOWN_OPTION,
                                          "Server does not recognize given option"))

    # ------------------------------------------------------------------ timers

    @property
    def running_jobs(self) -> int:
        """Jobs currently held by workers (what a graceful shutdown waits for)."""
        return sum(f.running for f in self.functions.values())

    def next_deadline(self) -> float | None:
        """Clock time of the earliest pending timer (epoch release or job timeout)."""
        return self.timers[0][0] if self.timers else None

    def run_timers(self) -> None:
        """Fire every timer that is due: release scheduled jobs, requeue overrunning ones."""
        now = self.clock()
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, _, job, attempt = heapq.heappop(timers)
            if attempt == _EPOCH_TIMER:
                if job.state == SCHEDULED:
                    job.function.scheduled -= 1
                    self._enqueue(job)
            elif job.state == RUNNING and job.attempt == attempt:
                self._requeue(job)

    # ------------------------------------------------------------------ admin helpers

    def cancel(self, handle: bytes) -> bool:
        """Admin ``cancel job``: fail a job that has not started yet. True if cancelled."""
        job = self.jobs.get(handle)
        if job is None or job.state not in (QUEUED, SCHEDULED):
            return False
        self._unqueue(job)
        self._fail_clients(job)
        self._drop_stored(job)
        self._forget(job)
        return True
