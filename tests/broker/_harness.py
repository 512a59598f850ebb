"""Plain-function helpers for driving a :class:`Broker` without sockets.

A test plays every connection itself: it calls ``broker.handle(peer, TYPE, *fields)``
and reads what the broker queued for each peer with :func:`take` (binary replies) or
:func:`admin` (text replies). Time is a :class:`Clock` the test moves by hand.
"""

from __future__ import annotations

from collections import OrderedDict

from gearshift.broker import Broker, BrokerConfig, Job, Outcome, Peer, Schedule
from gearshift.broker._model import Ack
from gearshift.protocol import RES, Packet, PacketReader, PacketType

P = PacketType


class RecordingStore:
    """Implements StoreHooks by writing down every call (and answering none: a test
    calls ``broker.persisted(job)`` itself)."""

    def __init__(self) -> None:
        self.added: list[Job] = []
        self.removed: list[bytes] = []
        self.retried: list[tuple[bytes, int]] = []
        self.updated: list[tuple[bytes, int, float]] = []
        self.outcomes: dict[bytes, Outcome | None] = {}
        self.schedules: dict[bytes, Schedule | None] = {}
        self.flows: dict[bytes, str | None] = {}
        #: replies held for a schedule write: the test answers broker.schedule_written
        self.schedule_acks: list[tuple[Ack, bytes]] = []

    def add(self, job: Job) -> None:
        self.added.append(job)

    def remove(self, job: Job) -> None:
        self.removed.append(job.handle)

    def update(self, job: Job) -> None:
        self.retried.append((job.handle, job.retries))
        self.updated.append((job.handle, job.retries, job.when))

    def put_outcome(self, outcome: Outcome) -> None:
        self.outcomes[outcome.handle] = outcome

    def drop_outcome(self, handle: bytes) -> None:
        self.outcomes[handle] = None

    def put_schedule(self, schedule: Schedule, ack: Ack | None = None) -> None:
        self.schedules[schedule.key] = schedule
        if ack is not None:
            self.schedule_acks.append((ack, schedule.key))

    def drop_schedule(self, key: bytes) -> None:
        self.schedules[key] = None

    def put_flow(self, function: bytes, setting: str) -> None:
        self.flows[function] = setting

    def drop_flow(self, function: bytes) -> None:
        self.flows[function] = None


class Clock:
    """An injected wall clock that only moves when the test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_broker(clock: Clock | None = None, **config: object) -> Broker:
    """A memory-only broker with a fixed pid and a short handle prefix."""
    cfg = BrokerConfig(handle_prefix=b"H:t:", pid=4242, version="9.9.9")
    for name, value in config.items():
        setattr(cfg, name, value)
    broker = Broker(cfg, clock=clock if clock is not None else Clock())
    _BROKERS[id(broker)] = (broker, {})
    while len(_BROKERS) > _LIVE_BROKERS:
        _BROKERS.popitem(last=False)
    return broker


#: Brokers made by make_broker, newest last, with the bytes each has handed to the
#: "socket" so far, per peer, not yet read by a test. Not a WeakKeyDictionary: the
#: compiled (mypyc) Broker takes no weak references. Bounded instead: only the newest
#: brokers are tracked (no test drives more at once; state machines make one per run).
_BROKERS: OrderedDict[int, tuple[Broker, dict[int, tuple[Peer, bytearray]]]] = OrderedDict()
_LIVE_BROKERS = 8


def _flush_all() -> None:
    """Do what the I/O shell does: take the dirty peers, "write" and clear their output.

    Output must be collected through ``take_dirty()`` (not read from ``peer.out``
    directly): that is where replies held behind a store write are set aside.
    """
    for broker, inbox in list(_BROKERS.values()):
        for peer in broker.take_dirty():
            if peer.out:
                entry = inbox.setdefault(id(peer), (peer, bytearray()))
                entry[1].extend(peer.take_output())


def _read(peer: Peer) -> bytes:
    _flush_all()
    for _, inbox in _BROKERS.values():
        entry = inbox.get(id(peer))
        if entry is not None and entry[0] is peer:
            del inbox[id(peer)]
            return bytes(entry[1])
    return b""


def take(peer: Peer) -> list[Packet]:
    """Decode and consume every binary reply written to ``peer`` so far."""
    return PacketReader(expect=RES, allow_text=False).feed(_read(peer))


def admin(broker: Broker, peer: Peer, line: bytes) -> bytes:
    """Send one admin text line and return the raw text reply (all of it: a long listing
    comes a piece per ``Broker.resume``, as the server's I/O shell asks for it)."""
    _read(peer)
    broker.handle(peer, P.TEXT, line)
    reply = _read(peer)
    while peer.backlog is not None:
        broker.stalled.clear()
        broker.resume(peer)
        reply += _read(peer)
    return reply


def worker(broker: Broker, *functions: bytes) -> Peer:
    peer = broker.connect("127.0.0.1", 0)
    for name in functions:
        broker.handle(peer, P.CAN_DO, name)
    return peer


def submit(broker: Broker, client: Peer, function: bytes, data: bytes = b"x",
           unique: bytes = b"", ptype: int = P.SUBMIT_JOB) -> bytes:
    """Submit and return the handle from JOB_CREATED (asserting that is the only reply)."""
    broker.handle(client, ptype, function, unique, data)
    replies = take(client)
    assert len(replies) == 1, replies
    assert replies[0][0] == P.JOB_CREATED, replies
    return replies[0][1][0]


def grab(broker: Broker, peer: Peer) -> Packet:
    """GRAB_JOB and return the single reply (JOB_ASSIGN or NO_JOB)."""
    broker.handle(peer, P.GRAB_JOB)
    replies = take(peer)
    assert len(replies) == 1, replies
    return replies[0]


def grab_handle(broker: Broker, peer: Peer) -> bytes:
    ptype, fields = grab(broker, peer)
    assert ptype == P.JOB_ASSIGN, (ptype, fields)
    return fields[0]
