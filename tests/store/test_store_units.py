"""Pure parts of the store package: URL parsing, batch normalisation, record layout."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearshift.store import Batch, StoredJob, open_store, redact
from gearshift.store._record import pack_index, pack_job, split, unpack_index, unpack_job


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


jobs = st.builds(
    StoredJob, handle=st.binary(min_size=1, max_size=80), function=st.binary(max_size=40),
    unique=st.binary(max_size=64), data=st.binary(max_size=3000),
    priority=st.integers(0, 2), when=st.integers(0, 2**40), reducer=st.binary(max_size=20),
    retries=st.integers(0, 2**31))


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
