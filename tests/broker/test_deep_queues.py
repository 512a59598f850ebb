"""Deep queues (``--queue-memory``): past the budget, queued jobs stay in the store and
are paged back ahead of the workers, in the same order, still coalescing and still
counted. The store here is an in-process table that the test commits and lets answer by
hand (the real stores: tests/store/test_store_paging.py; real servers:
tests/server/test_deep_queues.py)."""

from __future__ import annotations

import json

from gearshift.broker import PENDING, Broker, Job, Lookup, Outcome, PagedRow, Peer, Schedule
from gearshift.broker._deep import JOB_BYTES
from gearshift.broker._model import Ack

from ._harness import P, _read, admin, grab, make_broker, take, worker


class PagingStore:
    """StoreHooks + PageHooks over a dict of rows by position: adds wait for
    :meth:`commit`, page reads and lookups for :meth:`serve` (as the real I/O shell,
    whose reads run while the broker goes on)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.rows: dict[int, PagedRow] = {}
        self.position = 0
        self.pending: list[Job] = []
        self.reads: list[tuple[bytes, int, int, bytes, int]] = []
        self.lookups: list[tuple[list[bytes], Lookup]] = []
        self.removed: list[bytes] = []

    # StoreHooks
    def add(self, job: Job) -> None:
        self.pending.append(job)

    def remove(self, job: Job) -> None:
        self.removed.append(job.handle)
        for position, row in list(self.rows.items()):
            if row[1] == job.handle:
                del self.rows[position]

    def update(self, job: Job) -> None: ...
    def put_outcome(self, outcome: Outcome) -> None: ...
    def drop_outcome(self, handle: bytes) -> None: ...
    def put_schedule(self, schedule: Schedule, ack: Ack | None = None) -> None: ...
    def drop_schedule(self, key: bytes) -> None: ...
    def put_flow(self, function: bytes, setting: str) -> None: ...
    def drop_flow(self, function: bytes) -> None: ...

    # PageHooks
    def load_page(self, function: bytes, priority: int, after: int, start: bytes,
                  limit: int) -> None:
        self.reads.append((function, priority, after, start, limit))

    def lookup(self, handles: list[bytes], request: Lookup) -> None:
        self.lookups.append((handles, request))

    # the test's hands
    def commit(self, stored_only: bool = False) -> None:
        """The batch commits: rows first, then the broker is told (as the committer)."""
        jobs, self.pending = self.pending, []
        for job in jobs:
            self.position += 1
            self.rows[self.position] = (self.position, job.handle, job.function.name,
                                        job.unique, job.data, job.priority, int(job.when),
                                        job.reducer, job.retries, job.submitted)
        if not stored_only:
            for job in jobs:
                self.broker.persisted(job)

    def serve(self) -> int:
        """Answer every read and lookup asked so far; how many were answered."""
        answered = 0
        while self.reads or self.lookups:
            reads, self.reads = self.reads, []
            for function, priority, after, start, limit in reads:
                low = after
                for position, row in self.rows.items():
                    if start and row[1] == start:
                        low = max(low, position - 1)
                page = [row for position, row in sorted(self.rows.items())
                        if position > low and row[2] == function and row[5] == priority]
                self.broker.paged(function, priority, page[:limit])
                answered += 1
            lookups, self.lookups = self.lookups, []
            for handles, request in lookups:
                self.broker.looked_up(request, [(0, *row[1:]) for row in self.rows.values()
                                                if row[1] in handles])
                answered += 1
        return answered


def deep(budget_jobs: int = 40) -> tuple[Broker, PagingStore]:
    """A broker with a store that pages and room for about ``budget_jobs`` 8-byte jobs."""
    broker = make_broker()
    store = PagingStore(broker)
    broker.store = store
    broker.enable_paging(budget_jobs * (JOB_BYTES + 8), store)
    return broker, store


def fill(broker: Broker, store: PagingStore, client: Peer, function: bytes, count: int,
         ptype: int = P.SUBMIT_JOB_BG, tag: bytes = b"", unique: bool = True) -> list[bytes]:
    """Submit ``count`` background jobs (committed in batches of 7); their handles."""
    handles = []
    for n in range(count):
        key = b"%s%s-%d" % (function, tag, n) if unique else b""
        broker.handle(client, ptype, function, key, b"%s%s#%d" % (function, tag, n))
        if n % 7 == 6:
            store.commit()
    store.commit()
    for ptype_got, fields in take(client):
        assert ptype_got == P.JOB_CREATED
        handles.append(fields[0])
    assert len(handles) == count
    return handles


def drain(broker: Broker, store: PagingStore, peer: Peer, limit: int = 10_000) -> list[bytes]:
    """Grab and complete jobs until NO_JOB with no read left to answer; the payloads."""
    done: list[bytes] = []
    while len(done) < limit:
        ptype, fields = grab(broker, peer)
        if ptype == P.NO_JOB:
            if not store.serve():
                break
            continue
        assert ptype == P.JOB_ASSIGN, (ptype, fields)
        done.append(fields[2])
        broker.handle(peer, P.WORK_COMPLETE, fields[0], b"ok")
        store.serve()
    return done


def report(broker: Broker) -> dict[str, int]:
    reply = admin(broker, broker.connect(), b"memory")
    assert reply.startswith(b"OK ")
    data: dict[str, int] = json.loads(reply[3:])
    return data


def test_jobs_past_the_budget_stay_in_the_store_and_are_counted() -> None:
    broker, store = deep(40)
    client = broker.connect()
    fill(broker, store, client, b"f", 500)
    mem = report(broker)
    assert mem["spilled"] > 400
    assert mem["jobs_in_memory"] + mem["spilled"] == 500
    assert mem["jobs_in_memory"] <= 60  # the budget, plus at most a page
    assert admin(broker, client, b"status") == b"f\t500\t0\t0\n.\n"
    assert admin(broker, client, b"prioritystatus") == b"f\t0\t500\t0\t0\n.\n"
    shown = admin(broker, client, b"show jobs").splitlines()
    assert len(shown) == 501
    assert shown[-1] == b"."


def test_order_is_kept_and_memory_stays_bounded_while_draining() -> None:
    broker, store = deep(40)
    client = broker.connect()
    fill(broker, store, client, b"f", 600)
    w = worker(broker, b"f")
    peak = 0
    dry = 0
    done: list[bytes] = []
    while True:
        ptype, fields = grab(broker, w)
        if ptype == P.NO_JOB:
            if not store.serve():
                break
            dry += 1
            continue
        done.append(fields[2])
        broker.handle(w, P.WORK_COMPLETE, fields[0], b"")
        peak = max(peak, len(broker.jobs))
        if len(done) % 5 == 0:
            store.serve()  # the store answers now and then, as a real one would
    assert done == [b"f#%d" % n for n in range(600)]
    assert peak <= 40 + 2 * broker.page_jobs
    assert report(broker)["spilled"] == 0
    assert admin(broker, client, b"status") == b"f\t0\t0\t1\n.\n"
    # Pages are read ahead: with the store answering every 5 jobs, the head never ran
    # dry (no NO_JOB before the end).
    assert dry == 0
    assert report(broker)["paged_in"] >= 500


def test_priorities_first_even_while_a_page_is_read() -> None:
    broker, store = deep(30)
    client = broker.connect()
    fill(broker, store, client, b"f", 60, P.SUBMIT_JOB_LOW_BG, b"low")
    fill(broker, store, client, b"f", 60, P.SUBMIT_JOB_BG, b"normal")
    fill(broker, store, client, b"f", 60, P.SUBMIT_JOB_HIGH_BG, b"high")
    w = worker(broker, b"f")
    got = []
    while True:
        ptype, fields = grab(broker, w)
        if ptype == P.NO_JOB:
            # Nothing is handed out while a more urgent page is still being read.
            if not store.serve():
                break
            continue
        got.append(fields[2])
        broker.handle(w, P.WORK_COMPLETE, fields[0], b"")
    assert got == ([b"fhigh#%d" % n for n in range(60)] + [b"fnormal#%d" % n for n in range(60)]
                   + [b"flow#%d" % n for n in range(60)])


def test_a_starved_function_sends_no_lower_priority_job() -> None:
    broker, store = deep(10)
    client = broker.connect()
    fill(broker, store, client, b"f", 40, P.SUBMIT_JOB_HIGH_BG, b"high")
    fill(broker, store, client, b"f", 3, P.SUBMIT_JOB_LOW_BG, b"low", unique=False)
    store.serve()
    w = worker(broker, b"f")
    first = []
    while True:  # take every HIGH job in memory without letting the store answer
        ptype, fields = grab(broker, w)
        if ptype == P.NO_JOB:
            break
        first.append(fields[2])
        broker.handle(w, P.WORK_COMPLETE, fields[0], b"")
    assert first
    assert all(b"high" in d for d in first)
    assert b"flow#0" not in drain(broker, store, w, 40 - len(first))
    assert drain(broker, store, w)[-3:] == [b"flow#0", b"flow#1", b"flow#2"]


def test_round_robin_across_deep_functions() -> None:
    broker, store = deep(20)
    client = broker.connect()
    for n in range(50):
        for name in (b"a", b"b"):
            broker.handle(client, P.SUBMIT_JOB_BG, name, b"%s%d" % (name, n), b"%s#%d" % (name, n))
        store.commit()
    take(client)
    w = worker(broker, b"a", b"b")
    got = drain(broker, store, w)
    assert [d for d in got if d.startswith(b"a")] == [b"a#%d" % n for n in range(50)]
    assert [d for d in got if d.startswith(b"b")] == [b"b#%d" % n for n in range(50)]
    # Both functions are served in turn throughout, not one after the other.
    firsts = [d[:1] for d in got[:40]]
    assert firsts.count(b"a") >= 15
    assert firsts.count(b"b") >= 15


def test_background_submission_coalesces_onto_a_spilled_job() -> None:
    broker, store = deep(10)
    client = broker.connect()
    handles = fill(broker, store, client, b"f", 100)
    added = store.position
    broker.handle(client, P.SUBMIT_JOB_BG, b"f", b"f-90", b"other data")
    assert take(client) == []  # held while the spilled job is read back
    store.serve()
    assert take(client) == [(P.JOB_CREATED, [handles[90]])]
    store.commit()
    assert store.position == added  # nothing new stored
    # Replies stay in request order around the held one.
    broker.handle(client, P.SUBMIT_JOB_BG, b"f", b"f-91", b"x")
    broker.handle(client, P.ECHO_REQ, b"after")
    assert take(client) == []
    store.serve()
    assert take(client) == [(P.JOB_CREATED, [handles[91]]), (P.ECHO_RES, [b"after"])]


def test_foreground_joiner_of_a_spilled_job_gets_its_result() -> None:
    broker, store = deep(10)
    client = broker.connect()
    handles = fill(broker, store, client, b"f", 100)
    fg = broker.connect()
    broker.handle(fg, P.SUBMIT_JOB, b"f", b"f-95", b"ignored")
    store.serve()
    assert take(fg) == [(P.JOB_CREATED, [handles[95]])]
    w = worker(broker, b"f")
    done = drain(broker, store, w)
    assert done == [b"f#%d" % n for n in range(100)]
    assert (P.WORK_COMPLETE, [handles[95], b"ok"]) in take(fg)


def test_a_hash_collision_is_caught_by_reading_the_job_back() -> None:
    broker, store = deep(10)
    client = broker.connect()
    handles = fill(broker, store, client, b"f", 60)
    spill = broker.spill
    assert spill is not None
    # Pretend key "f-new" hashes like a spilled job's key: the lookup must find it
    # is another key, and make a new job.
    spill.add_key(spill.key_hash(b"f", b"f-new", b""), spill.ref(handles[50]))
    broker.handle(client, P.SUBMIT_JOB_BG, b"f", b"f-new", b"new")
    store.serve()
    assert take(client) == []  # a new job: JOB_CREATED once it is stored
    [job] = store.pending
    store.commit()
    assert take(client) == [(P.JOB_CREATED, [job.handle])]
    assert job.handle not in handles


def test_status_of_spilled_jobs() -> None:
    broker, store = deep(10)
    client = broker.connect()
    handles = fill(broker, store, client, b"f", 60)
    spill = broker.spill
    assert spill is not None
    assert spill.holds(spill.ref(handles[55]))
    broker.handle(client, P.GET_STATUS, handles[55])
    assert take(client) == [(P.STATUS_RES, [handles[55], b"1", b"0", b"0", b"0"])]
    broker.handle(client, P.GET_STATUS_UNIQUE, b"f-55")
    assert take(client) == []
    store.serve()
    assert take(client) == [(P.STATUS_RES_UNIQUE, [b"f-55", b"1", b"0", b"0", b"0", b"0"])]
    broker.handle(client, P.GET_STATUS_UNIQUE, b"no-such-key")
    assert take(client) == [(P.STATUS_RES_UNIQUE, [b"no-such-key", b"0", b"0", b"0", b"0",
                                                   b"0"])]


def test_cancelling_a_spilled_job() -> None:
    broker, store = deep(10)
    client = broker.connect()
    handles = fill(broker, store, client, b"f", 60)
    operator = broker.connect("127.0.0.1")
    assert admin(broker, operator, b"cancel job " + handles[40]) == b""  # held
    store.serve()
    assert _read(operator) == b"OK\r\n"
    assert handles[40] in store.removed
    assert admin(broker, operator, b"cancel job " + handles[40]) == b"ERR UNKNOWN_JOB\r\n"
    broker.handle(operator, P.GET_STATUS, handles[40])
    assert take(operator) == [(P.STATUS_RES, [handles[40], b"0", b"0", b"0", b"0"])]
    w = worker(broker, b"f")
    assert b"f#40" not in drain(broker, store, w)
    assert admin(broker, client, b"status") == b"f\t0\t0\t1\n.\n"


def test_a_page_never_moves_past_a_job_not_yet_persisted() -> None:
    broker, store = deep(10)
    client = broker.connect()
    fill(broker, store, client, b"f", 20)
    assert 0 < report(broker)["spilled"] < broker.page_jobs  # one page reaches the end
    # A job is committed, but the broker has not been told yet when the page is read.
    broker.handle(client, P.SUBMIT_JOB_BG, b"f", b"late", b"late")
    late = store.pending[0]
    store.commit(stored_only=True)
    assert late.state == PENDING
    store.serve()  # the page holds the late job's row: it must stop before it
    broker.persisted(late)  # now it spills (its queue is deep) ...
    assert report(broker)["spilled"] == 1
    w = worker(broker, b"f")
    done = drain(broker, store, w)  # ... and is still read back
    assert done == [b"f#%d" % n for n in range(20)] + [b"late"]


def test_restart_replays_only_a_window() -> None:
    broker, store = deep(20)
    client = broker.connect()
    fill(broker, store, client, b"f", 300)
    rows = sorted(store.rows.items())
    # A new broker over the same rows: replay in store order, with positions, then
    # pages are read (not during the replay).
    fresh = make_broker()
    again = PagingStore(fresh)
    fresh.store = again
    fresh.enable_paging(20 * (JOB_BYTES + 8))
    again.rows = dict(rows)
    again.position = store.position
    for position, row in rows:
        _, handle, function, unique, data, priority, when, reducer, retries, submitted = row
        fresh.restore(handle, function, unique, data, priority, when, reducer, retries,
                      submitted, position)
    assert not again.reads
    fresh.start_paging(again)
    assert report(fresh)["jobs_in_memory"] <= 20 + fresh.page_jobs
    assert report(fresh)["spilled"] + report(fresh)["jobs_in_memory"] == 300
    # Coalescing onto a replayed, spilled job.
    c = fresh.connect()
    fresh.handle(c, P.SUBMIT_JOB_BG, b"f", b"f-299", b"x")
    again.serve()
    assert take(c) == [(P.JOB_CREATED, [rows[299][1][1]])]
    w = worker(fresh, b"f")
    assert drain(fresh, again, w) == [b"f#%d" % n for n in range(300)]
