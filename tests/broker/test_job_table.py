"""JobTable: the handle index that stores minted jobs by number, not by handle bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearshift.broker import Broker, BrokerConfig, Function, Job
from gearshift.broker._jobs import PAGE_SIZE, JobTable
from gearshift.broker._numbers import decimal
from gearshift.broker._packets import created_for, created_packet
from gearshift.protocol import PacketType as P

PREFIX = b"H:test:"


def new_job(func: Function) -> Job:
    return Job(func, b"", b"data", 1, True)


@pytest.fixture
def func() -> Function:
    return Function(b"f", PREFIX)


def test_minted_handles_are_prefix_and_number(func: Function) -> None:
    table = JobTable(PREFIX)
    jobs = [new_job(func) for _ in range(3)]
    assert [table.add(j) for j in jobs] == [1, 2, 3]
    assert [j.handle for j in jobs] == [b"H:test:1", b"H:test:2", b"H:test:3"]
    assert table.get(b"H:test:2") is jobs[1]
    assert table[b"H:test:3"] is jobs[2]
    assert b"H:test:1" in table
    assert len(table) == 3


@settings(max_examples=500)
@given(st.integers(min_value=0, max_value=10**14)
       | st.sampled_from([9_999, 10_000, 99_999_999, 10**8, 10**12 - 1, 10**12]))
def test_handle_numbers_are_written_as_decimal(n: int) -> None:
    # Handles are written from tables of digit groups, not formatted: every group
    # boundary (and past the tables, from 10**12 on) must still read as %d.
    assert b"".join(decimal(n)) == b"%d" % n


@pytest.mark.parametrize("seq", [9_999, 10_000, 10_001, 123_456_789, 10**12 + 7])
def test_handles_past_the_digit_tables_round_trip(func: Function, seq: int) -> None:
    table = JobTable(PREFIX)
    table._next = seq  # type: ignore[attr-defined]  # (private; no API skips numbers)
    job = new_job(func)
    table.add(job)
    assert job.handle == b"H:test:%d" % seq
    assert table.get(job.handle) is job
    assert created_for(PREFIX, seq) == created_packet(job.handle)


@pytest.mark.parametrize("handle", [
    b"H:test:007", b"H:test:+1", b"H:test: 1", b"H:test:1 ", b"H:test:1_0", b"H:test:",
    b"H:test:-1", b"H:test:0", b"H:test:4", b"H:test:1" + b"0" * 40, b"H:other:1",
    b"H:test", b"", b"1",
])
def test_only_the_canonical_spelling_finds_a_job(func: Function, handle: bytes) -> None:
    table = JobTable(PREFIX)
    for _ in range(3):
        table.add(new_job(func))
    assert table.get(handle) is None
    assert handle not in table
    with pytest.raises(KeyError):
        table[handle]
    assert "H:test:1" not in table  # a str is never a handle


def test_replayed_handles_are_kept_as_given(func: Function) -> None:
    table = JobTable(PREFIX)
    minted = new_job(func)
    table.add(minted)
    replayed = new_job(func)
    table.add_foreign(b"H:test:0.17", replayed)
    assert replayed.seq == -1
    assert replayed.handle == b"H:test:0.17"
    assert table.get(b"H:test:0.17") is replayed
    assert list(table) == [b"H:test:0.17", b"H:test:1"]  # replayed first
    table.remove(replayed)
    assert table.get(b"H:test:0.17") is None
    assert len(table) == 1


def test_pages_are_freed_when_their_jobs_end(func: Function) -> None:
    table = JobTable(PREFIX)
    jobs = [new_job(func) for _ in range(10 * PAGE_SIZE)]
    for job in jobs:
        table.add(job)
    assert table.pages_in_use >= 10
    straggler = jobs[PAGE_SIZE + 5]
    for job in jobs:
        if job is not straggler:
            table.remove(job)
    # The page being filled stays; the straggler keeps its own page alive, no other.
    assert table.pages_in_use == 2
    table.remove(straggler)
    assert table.pages_in_use == 1
    assert len(table) == 0
    assert list(table) == []
    table.remove(straggler)  # a second remove is a no-op
    assert len(table) == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5000)), max_size=300))
def test_agrees_with_a_dict(ops: list[tuple[bool, int]]) -> None:
    """Random adds and removes (pages cross many boundaries): same as a dict by handle."""
    func = Function(b"f", PREFIX)
    table = JobTable(PREFIX)
    model: dict[bytes, Job] = {}
    for add, pick in ops:
        if add or not model:
            for _ in range(pick % 40 + 1):
                job = new_job(func)
                table.add(job)
                model[job.handle] = job
        else:
            handle = list(model)[pick % len(model)]
            table.remove(model.pop(handle))
        assert len(table) == len(model)
    assert list(table.items()) == list(model.items())  # creation order
    for handle, job in model.items():
        assert table.get(handle) is job
    for n in range(1, table.minted + 2):
        handle = PREFIX + b"%d" % n
        assert table.get(handle) is model.get(handle)


def test_the_prefix_is_fixed_once_jobs_exist() -> None:
    broker = Broker(BrokerConfig(handle_prefix=b"H:a:"))
    broker.function(b"f")
    broker.set_handle_prefix(b"H:b:")
    client = broker.connect()
    broker.handle(client, P.SUBMIT_JOB_BG, b"f", b"", b"x")
    assert client.take_output().endswith(b"H:b:1")
    with pytest.raises(RuntimeError):
        broker.set_handle_prefix(b"H:c:")


def test_a_queued_background_job_carries_no_extras() -> None:
    """The memory budget of a deep queue: plain background jobs never allocate the
    extras record (clients, store acks, status, retries live there)."""
    broker = Broker()
    client = broker.connect()
    broker.handle(client, P.SUBMIT_JOB_BG, b"f", b"k1", b"x")
    broker.handle(client, P.SUBMIT_JOB_BG, b"f", b"", b"y")
    broker.handle(client, P.SUBMIT_JOB_HIGH_BG, b"f", b"k1", b"z")  # coalesced
    jobs = list(broker.jobs.values())
    assert len(jobs) == 2
    assert [j.more for j in jobs] == [None, None]
