"""A hypothesis state machine that plays random clients, workers and an admin console
against the broker while keeping its own model of what must be true.

After every step it checks:

* every job the broker knows is exactly the set the model says is alive (no job lost,
  none invented), and each is in exactly one state: queued (held by nobody) or running
  (held by exactly the worker that was assigned it);
* the admin ``status`` counts equal the real numbers;
* every reply a peer got was expected: a client only hears about jobs it is attached to,
  each attached client gets every WORK_* packet of its job, a grab returns a queued job
  of the most urgent priority among the worker's functions;
* NOOP goes only to a worker that sent PRE_SLEEP and has not been woken since; with
  ``worker_wakeup=0`` every such worker with a runnable job is woken, with
  ``worker_wakeup=1`` at least one capable worker is awake whenever a job is runnable.

``LimitedMachine`` runs the same rules under ``--concurrency a=1``: a job of ``a`` is
runnable only while no other job of ``a`` runs, and every rule above holds with that.

At teardown the remaining work is drained by a fresh worker: every job ends completed,
failed or abandoned and the broker holds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from gearshift.broker import PENDING, QUEUED, RUNNING, Broker, Peer
from gearshift.broker._flow import FlowRules, parse_concurrency
from gearshift.protocol import Packet

from ._harness import P, admin, make_broker, take

FUNCS = [b"a", b"b"]
UNIQUES = [b"", b"u1", b"-"]
PAYLOADS = [b"p1", b"p2"]
SUBMITS: dict[int, tuple[int, bool]] = {  # packet -> (priority, background)
    P.SUBMIT_JOB: (1, False), P.SUBMIT_JOB_BG: (1, True),
    P.SUBMIT_JOB_HIGH: (0, False), P.SUBMIT_JOB_HIGH_BG: (0, True),
    P.SUBMIT_JOB_LOW: (2, False), P.SUBMIT_JOB_LOW_BG: (2, True),
}
RETRIES = 2
INDEX = st.integers(min_value=0, max_value=1000)


@dataclass
class MJob:
    handle: bytes
    func: bytes
    unique: bytes
    data: bytes
    priority: int
    background: bool
    key: tuple[bytes, bytes] | None
    clients: list[int] = field(default_factory=list)  # one entry per attached submission
    worker: int | None = None
    retries: int = 0
    pending: bool = False  # background job whose store write is in flight: not runnable

    @property
    def queued(self) -> bool:
        return self.worker is None and not self.pending


@dataclass
class MWorker:
    peer: Peer
    funcs: set[bytes] = field(default_factory=set)
    sleeping: bool = False
    woken: bool = False  # got a NOOP since its last PRE_SLEEP
    held: set[bytes] = field(default_factory=set)


def _pick(ids: Mapping[int, object], index: int) -> int:
    """A stable choice among live ids (hypothesis draws the index, the dict decides)."""
    keys = sorted(ids)
    return keys[index % len(keys)]


class BrokerMachine(RuleBasedStateMachine):
    WAKEUP = 0
    #: --concurrency limits (function -> N); a function at its limit has no runnable job
    LIMITS: ClassVar[dict[bytes, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        flow = FlowRules([parse_concurrency(f"{f.decode()}={n}")
                          for f, n in self.LIMITS.items()])
        self.broker: Broker = make_broker(job_retries=RETRIES, worker_wakeup=self.WAKEUP,
                                          flow=flow)
        self.console = self.broker.connect("127.0.0.1", 1, fd=3)
        self.clients: dict[int, Peer] = {}
        self.workers: dict[int, MWorker] = {}
        self.jobs: dict[bytes, MJob] = {}
        self.keys: dict[tuple[bytes, bytes], bytes] = {}
        self.seen: set[bytes] = set()
        self.known_funcs: set[bytes] = set()
        self.expect: defaultdict[int, list[Packet]] = defaultdict(list)

    # ------------------------------------------------------------ model helpers

    def _queued_for(self, funcs: set[bytes]) -> list[MJob]:
        return [j for j in self.jobs.values() if self._runnable(j) and j.func in funcs]

    def _runnable(self, job: MJob) -> bool:
        """Queued, and its function is below its concurrency limit (if it has one)."""
        if not job.queued:
            return False
        limit = self.LIMITS.get(job.func)
        return limit is None or sum(
            1 for j in self.jobs.values() if j.func == job.func and j.worker is not None
        ) < limit

    def _drop(self, job: MJob) -> None:
        del self.jobs[job.handle]
        if job.key is not None and self.keys.get(job.key) == job.handle:
            del self.keys[job.key]

    def _tell(self, job: MJob, pkt: Packet) -> None:
        for cid in job.clients:
            self._deliver(cid, pkt)

    def _deliver(self, cid: int, pkt: Packet) -> None:
        """Expect ``pkt`` at client ``cid`` in this step (the store variant may hold it)."""
        self.expect[cid].append(pkt)

    def _lose(self, handle: bytes) -> None:
        """A worker let go of a running job: retry, or drop it (failing its clients)."""
        job = self.jobs[handle]
        job.worker = None
        job.retries += 1
        if job.retries >= RETRIES:
            self._tell(job, (P.WORK_FAIL, [handle]))
            self._drop(job)
        elif not job.background and not job.clients:
            self._drop(job)

    def _settle(self) -> None:
        """Read every peer's replies and compare them with what the model expected."""
        expect, self.expect = self.expect, defaultdict(list)
        for cid, peer in self.clients.items():
            got = take(peer)
            assert sorted(got) == sorted(expect.pop(cid, [])), (cid, got)
        for wid, w in self.workers.items():
            got = take(w.peer)
            noops = [p for p in got if p[0] == P.NOOP]
            assert [p for p in got if p[0] != P.NOOP] == expect.pop(wid, []), (wid, got)
            if noops:
                assert len(noops) == 1, f"worker {wid} got {len(noops)} NOOPs at once"
                assert w.sleeping, f"worker {wid} got a NOOP without PRE_SLEEP"
                assert not w.woken, f"worker {wid} got a second NOOP in one sleep"
                w.woken = True
        assert take(self.console) == []
        assert not any(expect.values()), f"replies expected by departed peers: {expect}"

    # ------------------------------------------------------------ connections

    @initialize(funcs=st.sets(st.sampled_from(FUNCS), min_size=1))
    def start(self, funcs: set[bytes]) -> None:
        # Begin with someone on each side so the interesting rules are enabled early.
        self.connect_client()
        self.connect_worker(set(FUNCS))
        self.connect_worker(funcs)

    @precondition(lambda self: len(self.clients) < 4)
    @rule()
    def connect_client(self) -> None:
        peer = self.broker.connect()
        self.clients[peer.id] = peer

    @precondition(lambda self: len(self.workers) < 4)
    @rule(funcs=st.sets(st.sampled_from(FUNCS), min_size=1))
    def connect_worker(self, funcs: set[bytes]) -> None:
        peer = self.broker.connect()
        self.workers[peer.id] = MWorker(peer)
        for name in sorted(funcs):
            self.broker.handle(peer, P.CAN_DO, name)
            self.workers[peer.id].funcs.add(name)
            self.known_funcs.add(name)
        self._settle()

    @precondition(lambda self: self.clients)
    @rule(index=INDEX, roll=st.integers(min_value=0, max_value=2))
    def disconnect_client(self, index: int, roll: int) -> None:
        if roll:  # a disconnect ends most stories: make it rarer than other steps
            return
        cid = _pick(self.clients, index)
        self.broker.disconnect(self.clients.pop(cid))
        for job in list(self.jobs.values()):
            if cid in job.clients:
                job.clients = [c for c in job.clients if c != cid]
                if not job.clients and not job.background and job.queued:
                    self._drop(job)
        self._settle()

    @precondition(lambda self: self.workers)
    @rule(index=INDEX, roll=st.integers(min_value=0, max_value=2))
    def disconnect_worker(self, index: int, roll: int) -> None:
        if roll:  # a disconnect ends most stories: make it rarer than other steps
            return
        wid = _pick(self.workers, index)
        w = self.workers.pop(wid)
        self.broker.disconnect(w.peer)
        for handle in sorted(w.held):
            self._lose(handle)
        self._settle()

    # ------------------------------------------------------------ client actions

    @precondition(lambda self: self.clients)
    @rule(index=INDEX, ptype=st.sampled_from(sorted(SUBMITS)), func=st.sampled_from(FUNCS),
          unique=st.sampled_from(UNIQUES), data=st.sampled_from(PAYLOADS))
    def submit(self, index: int, ptype: int, func: bytes, unique: bytes, data: bytes) -> None:
        cid = _pick(self.clients, index)
        priority, background = SUBMITS[ptype]
        self.broker.handle(self.clients[cid], ptype, func, unique, data)
        self.known_funcs.add(func)
        [(reply, fields)] = take(self.clients[cid])
        assert reply == P.JOB_CREATED
        handle = fields[0]
        key = None if not unique else (func, b"-" + data if unique == b"-" else b"u" + unique)
        if key is not None and key in self.keys:
            assert handle == self.keys[key], "coalescable submission got a new job"
            job = self.jobs[handle]
        else:
            assert handle not in self.seen, "handle reused"
            job = MJob(handle, func, unique, data, priority, background, key)
            self.jobs[handle] = job
            if key is not None:
                self.keys[key] = handle
        self.seen.add(handle)
        if not background:
            job.clients.append(cid)
        # A background duplicate of a foreground job changes nothing without a store
        # (gearmand: the job still goes when its foreground clients leave).
        self._settle()

    @precondition(lambda self: self.clients and self.seen)
    @rule(index=INDEX, which=INDEX)
    def get_status(self, index: int, which: int) -> None:
        cid = _pick(self.clients, index)
        handle = sorted(self.seen)[which % len(self.seen)]
        self.broker.handle(self.clients[cid], P.GET_STATUS, handle)
        job = self.jobs.get(handle)
        known, running = (b"1", b"1" if job.worker is not None else b"0") if job else (b"0", b"0")
        [(reply, fields)] = take(self.clients[cid])
        assert reply == P.STATUS_RES
        assert fields[:3] == [handle, known, running]
        self._settle()

    # ------------------------------------------------------------ worker actions

    @precondition(lambda self: self.workers)
    @rule(index=INDEX, ptype=st.sampled_from([P.GRAB_JOB, P.GRAB_JOB_UNIQ, P.GRAB_JOB_ALL]))
    def grab(self, index: int, ptype: int) -> None:
        wid = _pick(self.workers, index)
        w = self.workers[wid]
        candidates = self._queued_for(w.funcs)
        self.broker.handle(w.peer, ptype)
        w.sleeping = w.woken = False
        [(reply, fields)] = take(w.peer)
        if not candidates:
            assert reply == P.NO_JOB, fields
            self._settle()
            return
        assert reply == (P.JOB_ASSIGN if ptype == P.GRAB_JOB else P.JOB_ASSIGN_UNIQ), reply
        job = self.jobs[fields[0]]
        assert job in candidates, "grabbed a job that was not queued for this worker"
        assert job.priority == min(j.priority for j in candidates), "priority order broken"
        assert fields[1] == job.func
        assert fields[-1] == job.data
        if ptype != P.GRAB_JOB:
            assert fields[2] == job.unique
        job.worker = wid
        w.held.add(job.handle)
        self._settle()

    @precondition(lambda self: self.workers)
    @rule(index=INDEX)
    def pre_sleep(self, index: int) -> None:
        wid = _pick(self.workers, index)
        w = self.workers[wid]
        self.broker.handle(w.peer, P.PRE_SLEEP)
        w.sleeping, w.woken = True, False
        runnable = bool(self._queued_for(w.funcs))
        got = take(w.peer)
        assert got == ([(P.NOOP, [])] if runnable else []), "PRE_SLEEP with work must NOOP"
        w.woken = runnable
        self._settle()

    @precondition(lambda self: any(not w.sleeping for w in self.workers.values()))
    @rule(index=INDEX, func=st.sampled_from(FUNCS))
    def can_do(self, index: int, func: bytes) -> None:
        awake = {k: v for k, v in self.workers.items() if not v.sleeping}
        wid = _pick(awake, index)
        self.broker.handle(self.workers[wid].peer, P.CAN_DO, func)
        self.workers[wid].funcs.add(func)
        self.known_funcs.add(func)
        self._settle()

    @precondition(lambda self: self.workers)
    @rule(index=INDEX, func=st.sampled_from(FUNCS))
    def cant_do(self, index: int, func: bytes) -> None:
        wid = _pick(self.workers, index)
        w = self.workers[wid]
        self.broker.handle(w.peer, P.CANT_DO, func)
        w.funcs.discard(func)
        for handle in sorted(w.held):
            if self.jobs[handle].func == func:
                w.held.discard(handle)
                self._lose(handle)
        self._settle()

    @precondition(lambda self: self.workers)
    @rule(index=INDEX)
    def reset_abilities(self, index: int) -> None:
        wid = _pick(self.workers, index)
        w = self.workers[wid]
        self.broker.handle(w.peer, P.RESET_ABILITIES)
        w.funcs.clear()
        for handle in sorted(w.held):
            self._lose(handle)
        w.held.clear()
        self._settle()

    @precondition(lambda self: any(w.held for w in self.workers.values()))
    @rule(index=INDEX, which=INDEX, outcome=st.sampled_from(["complete", "fail", "exception"]))
    def finish(self, index: int, which: int, outcome: str) -> None:
        self._report(index, which, outcome)

    @precondition(lambda self: any(w.held for w in self.workers.values()))
    @rule(index=INDEX, which=INDEX, outcome=st.sampled_from(["status", "data"]))
    def progress(self, index: int, which: int, outcome: str) -> None:
        self._report(index, which, outcome)

    def _report(self, index: int, which: int, outcome: str) -> None:
        busy = {k: v for k, v in self.workers.items() if v.held}
        wid = _pick(busy, index)
        w = self.workers[wid]
        handle = sorted(w.held)[which % len(w.held)]
        job = self.jobs[handle]
        if outcome == "complete":
            self.broker.handle(w.peer, P.WORK_COMPLETE, handle, b"result")
            self._tell(job, (P.WORK_COMPLETE, [handle, b"result"]))
        elif outcome == "fail":
            self.broker.handle(w.peer, P.WORK_FAIL, handle)
            self._tell(job, (P.WORK_FAIL, [handle]))
        elif outcome == "exception":
            self.broker.handle(w.peer, P.WORK_EXCEPTION, handle, b"oops")
            self._tell(job, (P.WORK_FAIL, [handle]))
        elif outcome == "status":
            self.broker.handle(w.peer, P.WORK_STATUS, handle, b"1", b"2")
            self._tell(job, (P.WORK_STATUS, [handle, b"1", b"2"]))
        else:
            self.broker.handle(w.peer, P.WORK_DATA, handle, b"chunk")
            self._tell(job, (P.WORK_DATA, [handle, b"chunk"]))
        if outcome in ("complete", "fail", "exception"):
            w.held.discard(handle)
            self._drop(job)
        self._settle()

    # ------------------------------------------------------------ admin

    @precondition(lambda self: self.seen)
    @rule(which=INDEX)
    def cancel(self, which: int) -> None:
        handle = sorted(self.seen)[which % len(self.seen)]
        reply = admin(self.broker, self.console, b"cancel job " + handle)
        job = self.jobs.get(handle)
        if job is not None and not job.pending:
            # queued or running: its clients are failed; a (third-party) worker running
            # it is told nothing, and will not report it (what it would say is dropped)
            assert reply == b"OK\r\n"
            self._tell(job, (P.WORK_FAIL, [handle]))
            if job.worker is not None:
                self.workers[job.worker].held.discard(handle)
            self._drop(job)
        else:
            assert reply == b"ERR UNKNOWN_JOB\r\n"
        self._settle()

    # ------------------------------------------------------------ invariants

    @invariant()
    def jobs_match_the_model(self) -> None:
        assert set(self.broker.jobs) == set(self.jobs), "a job was lost or invented"
        for handle, job in self.broker.jobs.items():
            mine = self.jobs[handle]
            if mine.pending:
                assert job.state == PENDING, (handle, job.state)
            elif mine.worker is None:
                assert job.state == QUEUED, (handle, job.state)
                assert job.worker is None
            else:
                assert job.state == RUNNING, (handle, job.state)
                assert job.worker is self.workers[mine.worker].peer
        held = [h for w in self.workers.values() for h in w.held]
        assert len(held) == len(set(held)), "a job is held by two workers"
        # Each queued job sits in exactly one queue entry: its function's, at its priority
        # (dead entries of cancelled/abandoned jobs may linger; they are not QUEUED).
        in_queues: list[bytes] = []
        for func in self.broker.functions.values():
            for prio, queue in enumerate(func.queues):
                live = [j for j in queue if j.state == QUEUED]
                assert func.queued[prio] == len(live), (func.name, prio)
                for j in live:
                    assert (j.function is func, j.priority) == (True, prio)
                in_queues += [j.handle for j in live]
        assert sorted(in_queues) == sorted(h for h, j in self.jobs.items() if j.queued)

    @invariant()
    def a_workers_only_function_is_kept_up_to_date(self) -> None:
        # Peer.only lets a grab skip iterating the worker's functions: it must be the
        # one registered function exactly when there is one.
        for w in self.workers.values():
            funcs = list(w.peer.functions)
            assert w.peer.only is (funcs[0] if len(funcs) == 1 else None), funcs

    @invariant()
    def payload_bytes_are_counted_exactly(self) -> None:
        # --max-memory counts against this on every path a job is made or forgotten
        assert self.broker.jobs.payload_bytes == sum(
            len(job.data) for job in self.broker.jobs.values())

    @invariant()
    def status_counts_are_true(self) -> None:
        lines = admin(self.broker, self.console, b"status").split(b"\n")
        assert lines[-2:] == [b".", b""]
        got = {}
        for line in lines[:-2]:
            name, total, running, workers = line.split(b"\t")
            got[name] = (int(total), int(running), int(workers))
        expected = {}
        for name in self.known_funcs:
            jobs = [j for j in self.jobs.values() if j.func == name and not j.pending]
            expected[name] = (
                len(jobs),
                sum(1 for j in jobs if j.worker is not None),
                sum(1 for w in self.workers.values() if name in w.funcs),
            )
        assert got == expected

    @invariant()
    def runnable_work_wakes_someone(self) -> None:
        for wid, w in self.workers.items():
            stuck = w.sleeping and not w.woken and self._queued_for(w.funcs)
            if self.WAKEUP == 0:
                assert not stuck, f"worker {wid} sleeps while it has runnable work"
        for job in self.jobs.values():
            if not self._runnable(job):
                continue
            capable = [w for w in self.workers.values() if job.func in w.funcs]
            if capable:
                assert any(not w.sleeping or w.woken for w in capable), (
                    f"{job.handle!r} is runnable but every capable worker sleeps un-woken")

    def teardown(self) -> None:
        # Finish what is running, then let one fresh worker drain every queue.
        for w in self.workers.values():
            for handle in sorted(w.held):
                self.broker.handle(w.peer, P.WORK_COMPLETE, handle, b"end")
                self._tell(self.jobs[handle], (P.WORK_COMPLETE, [handle, b"end"]))
                self._drop(self.jobs[handle])
            w.held.clear()
            w.sleeping = False  # its NOOPs are no longer checked
            w.woken = True
        drain = self.broker.connect()
        for name in FUNCS:
            self.broker.handle(drain, P.CAN_DO, name)
        for _ in range(200):
            self.broker.handle(drain, P.GRAB_JOB)
            [(reply, fields)] = take(drain)
            if reply == P.NO_JOB:
                break
            handle = fields[0]
            self.broker.handle(drain, P.WORK_COMPLETE, handle, b"end")
            self._tell(self.jobs[handle], (P.WORK_COMPLETE, [handle, b"end"]))
            self._drop(self.jobs[handle])
        for w in self.workers.values():
            take(w.peer)
        self._settle()
        assert dict(self.broker.jobs.items()) == {}
        assert self.jobs == {}


class WakeOneMachine(BrokerMachine):
    WAKEUP = 1


class LimitedMachine(BrokerMachine):
    """Wake-one, with ``--concurrency a=1``: at most one job of a runs, the rest of a's
    jobs wait without stranding a worker, and b is unaffected."""

    WAKEUP = 1
    LIMITS: ClassVar[dict[bytes, int]] = {b"a": 1}

    @invariant()
    def limit_holds(self) -> None:
        func = self.broker.functions.get(b"a")
        assert func is None or func.running <= 1


TestWakeAll = BrokerMachine.TestCase
TestWakeAll.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestWakeOne = WakeOneMachine.TestCase
TestWakeOne.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestLimited = LimitedMachine.TestCase
TestLimited.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
