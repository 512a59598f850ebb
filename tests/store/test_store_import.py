"""``gearshift import`` against queues written by the real gearmand and its plugins.

Each test starts gearmand with a queue plugin, submits background jobs with no worker,
stops it (the rows stay), imports them with the CLI, and then runs them on a gearshift
server started on the imported store.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import _drop_redis, _drop_sql, need_service
from gearlink import Link, P
from test_store_crash import drain

from gearshift.cli import main
from gearshift.store import open_store
from gearshift.testing import GearmandServer, GearshiftServer, gearmand_path


@dataclass
class Source:
    name: str
    gearmand_args: list[str]
    url: str
    options: list[str]


@pytest.fixture(params=["sqlite", "postgres", "mysql", "redis"])
def source(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Source]:
    if gearmand_path() is None:
        message = "gearmand is not installed (apt-get install gearman-job-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tag = "gq" + uuid.uuid4().hex[:10]
    if request.param == "sqlite":
        path = f"{tmp_path}/gearmand.db"
        yield Source("sqlite", ["-q", "libsqlite3", "--libsqlite3-db", path],
                     f"gearmand-sqlite://{path}", [])
    elif request.param == "postgres":
        need_service("PostgreSQL", "127.0.0.1", 5432)
        yield Source("postgres", ["-q", "postgres", "--libpq-table", tag, "--libpq-conninfo",
                                  "host=127.0.0.1 port=5432 user=postgres dbname=test"],
                     "gearmand-postgres://postgres@127.0.0.1:5432/test", ["--table", tag])
        _drop_sql("postgresql", "", tag)
    elif request.param == "mysql":
        need_service("MariaDB", "127.0.0.1", 3306)
        yield Source("mysql", ["-q", "mysql", "--mysql-host", "127.0.0.1", "--mysql-user",
                               "root", "--mysql-db", "test", "--mysql-table", tag],
                     "gearmand-mysql://root@127.0.0.1:3306/test", ["--table", tag])
        _drop_sql("mysql", "", tag)
    else:
        need_service("Redis", "127.0.0.1", 6379)
        yield Source("redis", ["-q", "redis", "--redis-server", "127.0.0.1", "--redis-port",
                               "6379", "--redis-prefix", tag],
                     "gearmand-redis://127.0.0.1:6379/0", ["--prefix", tag])
        _drop_redis(tag)


def stored_rows(url: str, data_dir: str) -> list[tuple[bytes, bytes, bytes, int, int]]:
    async def read() -> list[tuple[bytes, bytes, bytes, int, int]]:
        store = open_store(url, data_dir=data_dir)
        await store.open()
        jobs = await store.load()
        await store.close()
        return [(j.function, j.unique, j.data, j.priority, j.when) for j in jobs]

    return asyncio.run(read())


@pytest.mark.gearmand
@pytest.mark.storage
@pytest.mark.timeout(120)
def test_import_gearmand_queue_then_run_it(source: Source, tmp_path: object,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    binary = b"bin\x00\x01\xff\x00"
    submitted = [
        (P.SUBMIT_JOB_BG, b"resize", b"u-normal", b"normal data", 1),
        (P.SUBMIT_JOB_HIGH_BG, b"resize", b"u-high", b"high data", 0),
        (P.SUBMIT_JOB_LOW_BG, b"mail", b"u-low", binary, 2),
        *((P.SUBMIT_JOB_BG, b"bulk", f"b{n}".encode(), f"{n}".encode(), 1) for n in range(50)),
    ]
    # Far future: imported with its run time, not run below. Past 2038 on purpose:
    # gearmand's MySQL table wraps it negative (the importer undoes that); its
    # PostgreSQL plugin refuses it (QUEUE_ERROR), so there a 2033 time is used.
    epoch = 2_000_000_000 if source.name == "postgres" else 4_102_444_800
    with GearmandServer(extra_args=source.gearmand_args) as gearmand:
        link = Link(gearmand.host, gearmand.port)
        for ptype, function, unique, data, _ in submitted:
            link.submit_bg(function, unique, data, ptype)
        if source.name != "redis":  # gearmand's redis plugin refuses epoch jobs
            kind, _ = link.request(P.SUBMIT_JOB_EPOCH, b"later", b"u-epoch", str(epoch).encode(),
                                   b"epoch data")
            assert kind == P.JOB_CREATED
        link.close()
    expected = {(f, u, d, p, 0) for _, f, u, d, p in submitted}
    if source.name != "redis":
        expected.add((b"later", b"u-epoch", b"epoch data", 1, epoch))

    target = f"sqlite://{tmp_path}/gearshift.db"
    argv = ["import", "--from", source.url, "--to", target, *source.options]
    assert main(argv) == 0
    assert f"imported {len(expected)} jobs" in capsys.readouterr().out
    assert set(stored_rows(target, str(tmp_path))) == expected

    # A second import of the same queue adds nothing.
    assert main(argv) == 0
    assert f"{len(expected)} already present" in capsys.readouterr().out
    assert len(stored_rows(target, str(tmp_path))) == len(expected)

    with GearshiftServer(store=target) as server:
        ran = drain(server, [b"resize", b"mail", b"bulk"])
    assert sorted(ran) == sorted(d for _, _, _, d, _ in submitted)


def test_import_rejects_unknown_source(capsys: pytest.CaptureFixture[str],
                                       tmp_path: object) -> None:
    assert main(["import", "--from", "gearmand-oracle://x", "--to", "memory",
                 "--data-dir", str(tmp_path)]) == 1
    assert "unknown gearmand queue" in capsys.readouterr().err


def test_import_missing_sqlite_table_is_a_clear_error(tmp_path: object,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    path = f"{tmp_path}/empty.db"
    sqlite3.connect(path).close()
    assert main(["import", "--from", f"gearmand-sqlite://{path}", "--to", "memory"]) == 1
    assert "no table 'gearman_queue'" in capsys.readouterr().err
