"""The broker state machine again, now with a durable store whose writes the test
answers (or fails) at random later steps.

On top of the base machine's checks this one models the store contract: a background
submission is acknowledged only once its write commits; a foreground submission that
coalesces while a write is in flight, and every later reply to that client, wait behind
that acknowledgement (replies leave in request order); a failed write answers QUEUE_ERROR
and the job is gone; a job that finished while being written is removed on commit.

When the write that a background submission caused by joining a foreground job fails,
the background joiners get QUEUE_ERROR but foreground joiners (who only waited to keep
their replies in order) are accepted: the job still runs for them.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from gearshift.broker import Job
from gearshift.protocol import ErrorCode, Packet

from ._harness import P, RecordingStore
from .test_state_machine import INDEX, PAYLOADS, SUBMITS, UNIQUES, BrokerMachine, MJob, _pick


class InflightStore(RecordingStore):
    """StoreHooks whose adds stay unanswered until the machine commits or fails them."""

    def __init__(self) -> None:
        super().__init__()
        self.inflight: list[Job] = []

    def add(self, job: Job) -> None:
        self.inflight.append(job)


class Gate:
    """A client's reply held for a store write; later replies queue behind it."""

    def __init__(self, cid: int, foreground: bool) -> None:
        self.cid = cid
        self.foreground = foreground
        self.reply: Packet | None = None


class DurableMachine(BrokerMachine):
    WAKEUP = 0

    def __init__(self) -> None:
        super().__init__()
        self.store = InflightStore()
        self.broker.store = self.store
        self.gates: defaultdict[int, list[Gate | Packet]] = defaultdict(list)
        self.waiting: defaultdict[bytes, list[Gate]] = defaultdict(list)  # unpaid, per job
        self.writes: dict[bytes, MJob] = {}  # jobs with a write in flight (maybe finished)

    # ------------------------------------------------------------ ordering model

    def _deliver(self, cid: int, pkt: Packet) -> None:
        if self.gates[cid]:
            self.gates[cid].append(pkt)
        else:
            self.expect[cid].append(pkt)

    def _owe(self, cid: int, handle: bytes, foreground: bool = False) -> None:
        gate = Gate(cid, foreground)
        self.gates[cid].append(gate)
        self.waiting[handle].append(gate)

    def _pay(self, handle: bytes, reply: Packet, foreground_reply: Packet | None = None) -> None:
        for gate in self.waiting.pop(handle, []):
            gate.reply = foreground_reply if gate.foreground and foreground_reply else reply
            queue = self.gates.get(gate.cid)
            if queue is None:
                continue  # the client left; nothing to deliver
            while queue:
                head = queue[0]
                if isinstance(head, Gate):
                    if head.reply is None:
                        break
                    self.expect[gate.cid].append(head.reply)
                else:
                    self.expect[gate.cid].append(head)
                queue.pop(0)

    # ------------------------------------------------------------ rules

    @precondition(lambda self: self.clients)
    @rule(index=INDEX, ptype=st.sampled_from(sorted(SUBMITS)), func=st.sampled_from([b"a", b"b"]),
          unique=st.sampled_from(UNIQUES), data=st.sampled_from(PAYLOADS))
    def submit(self, index: int, ptype: int, func: bytes, unique: bytes, data: bytes) -> None:
        cid = _pick(self.clients, index)
        priority, background = SUBMITS[ptype]
        key = None if not unique else (func, b"-" + data if unique == b"-" else b"u" + unique)
        before, writes = set(self.broker.jobs), len(self.store.inflight)
        self.broker.handle(self.clients[cid], ptype, func, unique, data)
        self.known_funcs.add(func)
        new = set(self.broker.jobs) - before
        if key is not None and key in self.keys:
            assert not new, "coalescable submission made a new job"
            handle = self.keys[key]
            job = self.jobs[handle]
            if not background:
                job.clients.append(cid)
            if background and not job.background:
                job.background = True  # now owned by a submitter off the socket: stored
                self._owe(cid, handle)
                assert len(self.store.inflight) == writes + 1
                self.writes[handle] = job
            elif job.pending or self.waiting.get(handle):
                self._owe(cid, handle, foreground=not background)
            else:
                self._deliver(cid, (P.JOB_CREATED, [handle]))
        else:
            [handle] = new
            job = MJob(handle, func, unique, data, priority, background, key)
            self.jobs[handle] = job
            if key is not None:
                self.keys[key] = handle
            if background:
                job.pending = True
                self._owe(cid, handle)
                assert [j.handle for j in self.store.inflight[writes:]] == [handle]
                self.writes[handle] = job
            else:
                job.clients.append(cid)
                self._deliver(cid, (P.JOB_CREATED, [handle]))
        assert len(self.store.inflight) == len(self.writes)
        self._settle()

    @precondition(lambda self: self.store.inflight)
    @rule(which=INDEX)
    def commit(self, which: int) -> None:
        job = self.store.inflight.pop(which % len(self.store.inflight))
        self.broker.persisted(job)
        mine = self.writes.pop(job.handle)
        self._pay(job.handle, (P.JOB_CREATED, [job.handle]))
        if mine.pending:
            mine.pending = False
        elif self.jobs.get(job.handle) is not mine:
            assert job.handle in self.store.removed, "finished job's row left behind"
        self._settle()

    @precondition(lambda self: self.store.inflight)
    @rule(which=INDEX)
    def fail_write(self, which: int) -> None:
        job = self.store.inflight.pop(which % len(self.store.inflight))
        self.broker.persist_failed(job, "disk full")
        mine = self.writes.pop(job.handle)
        refused: Packet = (P.ERROR, [ErrorCode.QUEUE_ERROR, b"disk full"])
        if mine.pending:  # a new background job: gone, and every submitter refused
            self._pay(job.handle, refused)
            self._drop(mine)
        else:  # a joined foreground job: it stays what it was
            self._pay(job.handle, refused, (P.JOB_CREATED, [job.handle]))
            mine.background = False
            if self.jobs.get(job.handle) is mine and not mine.clients and mine.queued:
                self._drop(mine)
        self._settle()

    @precondition(lambda self: self.clients)
    @rule(index=INDEX, roll=st.integers(min_value=0, max_value=2))
    def disconnect_client(self, index: int, roll: int) -> None:
        if not roll:
            self.gates.pop(_pick(self.clients, index), None)
        super().disconnect_client(index, roll)

    # get_status reads its reply at once, which a held reply would delay: not used here.
    get_status = None  # type: ignore[assignment]

    def teardown(self) -> None:
        while self.store.inflight:
            self.commit(0)
        super().teardown()


TestDurable = DurableMachine.TestCase
TestDurable.settings = settings(max_examples=150, stateful_step_count=50, deadline=None)
