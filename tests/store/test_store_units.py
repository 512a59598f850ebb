"""Pure parts of the store package: URL parsing, batch normalisation, record layout."""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearshift.store import (
    OUTCOME_STATES,
    Batch,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    open_store,
    redact,
)
from gearshift.store._record import (
    Index,
    pack_index,
    pack_index2,
    pack_job,
    pack_outcome,
    pack_reasons,
    pack_schedule,
    split,
    unpack_index,
    unpack_index2,
    unpack_job,
    unpack_outcome,
    unpack_reasons,
    unpack_schedule,
)


def job(handle: bytes, **over: object) -> StoredJob:
    fields: dict[str, object] = dict(handle=handle, function=b"f", unique=b"", data=b"d",
                                     priority=1, when=0)
    fields.update(over)
    return StoredJob(**fields)  # type: ignore[arg-type]


def test_bare_sqlite_lives_in_the_data_dir(tmp_path: object) -> None:
    store = open_store("sqlite", data_dir=str(tmp_path))
    assert store.description == f"SQLite {os.path.abspath(str(tmp_path))}/queue.db"


def test_sqlite_url_path_and_table(tmp_path: object) -> None:
    store = open_store(f"sqlite://{tmp_path}/x.db?table=jobs_2", data_dir="/unused")
    assert store.description == f"SQLite {tmp_path}/x.db"


@pytest.mark.parametrize("url", ["oracle://x", "sqlit:///x", "", "file:///tmp/q"])
def test_unknown_scheme_is_a_clear_error(url: str) -> None:
    with pytest.raises(ValueError, match=r"scheme must be one of .*memcached.*sqlite"):
        open_store(url, data_dir="/tmp")


@pytest.mark.parametrize("table", ["x;drop table y", "1abc", "a-b", "a" * 49])
def test_table_names_cannot_inject_sql(table: str) -> None:
    with pytest.raises(ValueError, match="table name"):
        open_store(f"postgresql://u@h/db?table={table}", data_dir="/tmp")


def test_drivers_are_imported_only_when_used() -> None:
    # A fresh interpreter: this process has imported every driver already.
    code = ("import sys; from gearshift.store import open_store; "
            "open_store('sqlite:///tmp/never-opened.db', data_dir='/tmp'); "
            "open_store('memory', data_dir='/tmp'); "
            "print(sorted({'asyncpg', 'aiomysql', 'redis', 'pymemcache'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
    code = code.replace("sqlite:///tmp/never-opened.db", "postgresql://u@h/db")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", "the driver is imported on first use, not on open_store"


def test_passwords_are_redacted_in_descriptions() -> None:
    assert redact("postgresql://bob:s3cret@db:5432/q") == "postgresql://bob:***@db:5432/q"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    store = open_store("mysql://bob:s3cret@db:3307/q", data_dir="/tmp")
    assert "s3cret" not in store.description
    assert "db:3307" in store.description


def test_bad_jobs_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="priority"):
        job(b"h", priority=3)
    with pytest.raises(ValueError, match="handle"):
        job(b"")
    with pytest.raises(ValueError, match="negative"):
        job(b"h", when=-1)


def test_batch_normalisation_cancels_add_and_remove() -> None:
    batch = Batch(adds=[job(b"a"), job(b"b"), job(b"c")], removes=[b"b", b"x", b"x"],
                  retries={b"c": 2, b"y": 1, b"x": 4})
    out = batch.normalized()
    assert [j.handle for j in out.adds] == [b"a", b"c"]
    assert out.adds[1].retries == 2
    assert out.removes == [b"x"]
    assert out.retries == {b"y": 1}
    assert not Batch(adds=[job(b"a")], removes=[b"a"]).normalized()


def test_batch_normalisation_folds_run_times_and_keeps_outcomes() -> None:
    done = StoredOutcome(b"d", b"f", b"", "complete", b"ok", 1, 1.5, 2.5, 3.5)
    daily = StoredSchedule(b"S", b"f", b"", "0 0 * * *", b"")
    batch = Batch(adds=[job(b"a", when=5, submitted=7.25), job(b"b")], removes=[b"b", b"c"],
                  retries={b"a": 2}, when={b"a": 99, b"b": 1, b"c": 1, b"z": 3},
                  outcomes={b"d": done, b"e": None}, schedules={b"S": daily, b"T": None})
    out = batch.normalized()
    assert [(j.handle, j.when, j.retries, j.submitted) for j in out.adds] == [
        (b"a", 99, 2, 7.25)]
    assert out.removes == [b"c"]
    assert out.when == {b"z": 3}  # a removed job's run time is dropped
    assert out.outcomes == {b"d": done, b"e": None}
    assert out.schedules == {b"S": daily, b"T": None}
    assert out.outcomes is not batch.outcomes  # a backend may consume its copy


@pytest.mark.parametrize("batch", [Batch(when={b"a": 1}), Batch(outcomes={b"a": None}),
                                   Batch(schedules={b"a": None})])
def test_batches_with_only_new_parts_are_not_empty(batch: Batch) -> None:
    assert batch
    assert batch.normalized()


def test_version_1_job_records_load_with_unknown_submission_time() -> None:
    stored = job(b"H:1", data=b"\x00x", reducer=b"r", when=9)
    lengths = [len(stored.handle), len(stored.function), len(stored.unique),
               len(stored.reducer), len(stored.data)]
    old = struct.pack(">BBqIIIII", 1, stored.priority, stored.when, *lengths) + b"".join(
        (stored.handle, stored.function, stored.unique, stored.reducer, stored.data))
    assert unpack_job(old, 4) == dataclasses.replace(stored, retries=4, submitted=0.0)
    with pytest.raises(ValueError, match="version"):
        unpack_job(b"\x07" + old[1:], 0)


jobs = st.builds(
    StoredJob, handle=st.binary(min_size=1, max_size=80), function=st.binary(max_size=40),
    unique=st.binary(max_size=64), data=st.binary(max_size=3000),
    priority=st.integers(0, 2), when=st.integers(0, 2**40), reducer=st.binary(max_size=20),
    retries=st.integers(0, 2**31), submitted=st.floats(0, 2e9))
times = st.floats(0, 4e9)
outcomes = st.builds(
    StoredOutcome, handle=st.binary(min_size=1, max_size=80), function=st.binary(max_size=40),
    unique=st.binary(max_size=64), state=st.sampled_from(OUTCOME_STATES),
    result=st.binary(max_size=3000), attempts=st.integers(0, 2**40), submitted=times,
    started=times, ended=times, dead=st.booleans(), data=st.binary(max_size=300),
    priority=st.integers(0, 2), reducer=st.binary(max_size=20),
    reasons=st.lists(st.binary(max_size=50), max_size=5))
schedules = st.builds(
    StoredSchedule, key=st.binary(min_size=1, max_size=80), function=st.binary(max_size=40),
    unique=st.binary(max_size=64), cron=st.text(max_size=40), data=st.binary(max_size=300),
    priority=st.integers(0, 2), last_fired=times)


@given(jobs)
def test_job_record_round_trips(stored: StoredJob) -> None:
    assert unpack_job(pack_job(stored), stored.retries) == stored


@given(jobs, st.integers(1, 50))
def test_truncated_records_are_refused(stored: StoredJob, cut: int) -> None:
    blob = pack_job(stored)
    with pytest.raises(ValueError, match=r"truncated|length"):
        unpack_job(blob[:max(0, len(blob) - cut)], 0)


@given(st.dictionaries(st.binary(min_size=1, max_size=70), st.integers(0, 2**32 - 1)),
       st.integers(1, 300))
def test_index_round_trips_through_pieces(entries: dict[bytes, int], piece: int) -> None:
    pieces = split(pack_index(entries), piece)
    assert all(len(p) <= piece for p in pieces)
    assert unpack_index(b"".join(pieces)) == entries


@given(outcomes)
def test_outcome_record_round_trips(stored: StoredOutcome) -> None:
    assert unpack_outcome(pack_outcome(stored)) == stored
    assert unpack_reasons(pack_reasons(stored.reasons)) == stored.reasons


@given(schedules)
def test_schedule_record_round_trips(stored: StoredSchedule) -> None:
    assert unpack_schedule(pack_schedule(stored)) == stored


refs = st.dictionaries(st.binary(min_size=1, max_size=70),
                       st.tuples(st.text("0123456789abcdef-", min_size=1, max_size=30),
                                 st.integers(1, 9)))


@given(st.dictionaries(st.binary(min_size=1, max_size=70),
                       st.tuples(st.integers(0, 2**32 - 1), st.integers(-1, 2**40))),
       refs, refs, st.integers(1, 300))
def test_index_v2_round_trips_through_pieces(jobs: dict[bytes, tuple[int, int]],
                                             outs: dict[bytes, tuple[str, int]],
                                             scheds: dict[bytes, tuple[str, int]],
                                             piece: int) -> None:
    index = Index(jobs, outs, scheds)
    blob = pack_index2(index)
    assert unpack_index2(b"".join(split(blob, piece))) == index
    with pytest.raises(ValueError, match="truncated"):
        unpack_index2(blob[:-1])
