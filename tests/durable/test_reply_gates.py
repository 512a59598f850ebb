"""Reply order while JOB_CREATED waits for the store, at the broker level (sans I/O).

The end-to-end tests see one interleaving at a time; here Hypothesis drives the real
Broker through many: clients pipeline background and foreground submissions (new,
coalescing, joining a foreground job) and ECHOs, store writes finish or fail in any
order, and the output is flushed at arbitrary points exactly as the server does
(``take_dirty``, then take each peer's ``out``). Whatever happens, each client must get
exactly one reply per request, in request order, with the right handle.

The store side is :class:`ManualStore`: the broker's StoreHooks seam, finished by the
test instead of a database, because the property is about the broker's bookkeeping
and must not depend on the timing of a real commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from broker._harness import RecordingStore
from gearshift.broker import PENDING, Broker, BrokerConfig, Job, Peer
from gearshift.protocol import RES, PacketReader, PacketType

P = PacketType
CLIENTS = 3
UNIQUES = [b"", b"a", b"b", b"c"]


class ManualStore(RecordingStore):
    """StoreHooks whose writes stay pending until the test finishes them."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Job] = []
        #: the requests answered when each pending job's write finishes
        self.waiters: dict[int, list[Expected]] = {}

    def add(self, job: Job) -> None:
        assert all(j is not job for j in self.pending), "job written twice at once"
        self.pending.append(job)


@dataclass
class Expected:
    """One request's reply: ECHO_RES ``value``, or JOB_CREATED ``value`` (a handle) --
    or ERROR QUEUE_ERROR if the submission waited for a write that then failed.

    ``fails_with_write``: the submission's fate hangs on the write in flight when it
    arrived (a new background job, anything joining one, a background submission joining
    a foreground job); a foreground submission joining a foreground job only waits for it
    to keep replies in order. ``failed``: that write failed. The same job can be written
    again after a failed write (another background submission joins it), so failure
    belongs to the request, not to the handle.
    """

    kind: int
    value: bytes
    fails_with_write: bool = False
    failed: bool = False


class ReplyOrder(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = ManualStore()
        self.broker = Broker(BrokerConfig(handle_prefix=b"H:t:"), store=self.store)
        self.peers: list[Peer] = [self.broker.connect() for _ in range(CLIENTS)]
        self.expected: dict[int, list[Expected]] = {p.id: [] for p in self.peers}
        self.received: dict[int, list[tuple[int, list[bytes]]]] = {p.id: [] for p in self.peers}
        self.readers = {p.id: PacketReader(expect=RES, allow_text=False) for p in self.peers}
        self.echoes = 0

    def _submitted(self, peer: Peer, unique: bytes, background: bool) -> None:
        if unique:
            found = self.broker.job_by_unique(unique)
            assert found is not None
            job = found
        else:
            job = list(self.broker.jobs.values())[-1]  # the newest
        expected = Expected(P.JOB_CREATED, job.handle)
        if any(j is job for j in self.store.pending):
            expected.fails_with_write = background or job.state == PENDING
            self.store.waiters.setdefault(id(job), []).append(expected)
        self.expected[peer.id].append(expected)

    @rule(client=st.integers(0, CLIENTS - 1), unique=st.sampled_from(UNIQUES),
          priority=st.sampled_from([P.SUBMIT_JOB_BG, P.SUBMIT_JOB_HIGH_BG]))
    def submit_background(self, client: int, unique: bytes, priority: int) -> None:
        peer = self.peers[client]
        self.broker.handle(peer, priority, b"f", unique, b"data")
        self._submitted(peer, unique, background=True)

    @rule(client=st.integers(0, CLIENTS - 1), unique=st.sampled_from(UNIQUES))
    def submit_foreground(self, client: int, unique: bytes) -> None:
        peer = self.peers[client]
        self.broker.handle(peer, P.SUBMIT_JOB, b"f", unique, b"data")
        self._submitted(peer, unique, background=False)

    @rule(client=st.integers(0, CLIENTS - 1))
    def echo(self, client: int) -> None:
        self.echoes += 1
        value = b"e%d" % self.echoes
        self.broker.handle(self.peers[client], P.ECHO_REQ, value)
        self.expected[self.peers[client].id].append(Expected(P.ECHO_RES, value))

    @rule(data=st.data(), ok=st.booleans())
    def finish_write(self, data: st.DataObject, ok: bool) -> None:
        if not self.store.pending:
            return
        job = self.store.pending.pop(data.draw(st.integers(0, len(self.store.pending) - 1)))
        waiters = self.store.waiters.pop(id(job), [])
        if ok:
            self.broker.persisted(job)
        else:
            for expected in waiters:
                expected.failed = expected.fails_with_write
            self.broker.persist_failed(job, "store down")

    @rule()
    def flush(self) -> None:
        """What Server.flush does: take the dirty peers, write and reset their output."""
        for peer in self.broker.take_dirty():
            if peer.out:
                for ptype, fields in self.readers[peer.id].feed(peer.take_output()):
                    self.received[peer.id].append((int(ptype), list(fields)))

    @invariant()
    def replies_are_a_prefix_of_the_requests_in_order(self) -> None:
        for peer in self.peers:
            got = self.received[peer.id]
            want = self.expected[peer.id]
            assert len(got) <= len(want), f"more replies than requests: {got}"
            for (kind, fields), exp in zip(got, want, strict=False):
                if exp.kind == P.ECHO_RES:
                    assert (kind, fields) == (P.ECHO_RES, [exp.value]), (got, want)
                elif exp.failed:
                    assert kind == P.ERROR, (got, want)
                    assert fields[0] == b"QUEUE_ERROR"
                else:
                    assert (kind, fields) == (P.JOB_CREATED, [exp.value]), (got, want)

    def teardown(self) -> None:
        # Every write finishes: then every request has its reply.
        while self.store.pending:
            job = self.store.pending.pop(0)
            self.store.waiters.pop(id(job), None)
            self.broker.persisted(job)
        self.flush()
        self.replies_are_a_prefix_of_the_requests_in_order()
        for peer in self.peers:
            assert len(self.received[peer.id]) == len(self.expected[peer.id]), \
                f"missing replies: {self.received[peer.id]} vs {self.expected[peer.id]}"


ReplyOrder.TestCase.settings = settings(max_examples=300, stateful_step_count=40,
                                        deadline=None)
TestReplyOrder = ReplyOrder.TestCase


def test_released_replies_stay_ahead_of_a_new_gate() -> None:
    """Regression (found by ReplyOrder): a failed write releases ERROR + a parked ECHO; a
    new gated submission before the flush must not push them behind its JOB_CREATED."""
    store = ManualStore()
    broker = Broker(BrokerConfig(handle_prefix=b"H:t:"), store=store)
    peer = broker.connect()
    broker.handle(peer, P.SUBMIT_JOB_BG, b"f", b"", b"data")
    broker.handle(peer, P.ECHO_REQ, b"e1")
    broker.persist_failed(store.pending.pop(0), "store down")
    broker.handle(peer, P.SUBMIT_JOB_BG, b"f", b"", b"data")
    reader = PacketReader(expect=RES, allow_text=False)
    got = []
    for flushed in broker.take_dirty():
        got += reader.feed(flushed.take_output())
    assert got == [(P.ERROR, [b"QUEUE_ERROR", b"store down"]), (P.ECHO_RES, [b"e1"])]
    broker.persisted(store.pending.pop(0))
    for flushed in broker.take_dirty():
        got += reader.feed(flushed.take_output())
    assert got[2:] == [(P.JOB_CREATED, [b"H:t:2"])]
