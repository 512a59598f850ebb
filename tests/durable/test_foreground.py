"""What is stored and what is not: the default store, foreground jobs, and background
submissions that coalesce onto a foreground job.

The SQLite file is read with the stdlib ``sqlite3`` module behind the server's back,
so the tests see what a crash would leave, not what the server says it holds.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from gearshift.testing import GearshiftServer

from ._link import Link, P, admin
from ._proxy import Proxy
from ._services import (
    PG,
    address,
    drop,
    need_service,
    private_name,
    retarget,
    stored_count,
    with_name,
)
from .conftest import Target


class DefaultServer(GearshiftServer):
    """``gearshift serve`` as the README runs it: no ``--store``, no ``--data-dir``.

    The default data directory is redirected with ``$GEARSHIFT_DATA_DIR`` (documented in
    ``server/_config.py``) so the test never writes to the real home directory.
    """

    def __init__(self) -> None:
        super().__init__()
        self.env = {"GEARSHIFT_DATA_DIR": os.path.join(self.workdir, "data")}

    def command(self) -> list[str]:
        cmd = super().command()
        for option in ("--store", "--data-dir"):
            at = cmd.index(option)
            del cmd[at:at + 2]
        return cmd


def rows(server: GearshiftServer) -> list[tuple[bytes, bytes, bytes]]:
    """(handle, function, unique) of every job in the server's default SQLite file."""
    path = os.path.join(server.workdir, "data", "queue.db")
    assert os.path.exists(path), f"no SQLite queue at {path}"
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT handle, function, unique_key FROM gearshift_jobs ORDER BY seq").fetchall()
    finally:
        db.close()


def queued(server: GearshiftServer, function: str) -> int:
    for line in admin(server.host, server.port, "status"):
        name, total, _running, _workers = line.split("\t")
        if name == function:
            return int(total)
    return 0


@pytest.mark.timeout(60)
def test_default_serve_keeps_background_jobs_in_sqlite_in_data_dir() -> None:
    with DefaultServer() as server:
        with Link(server.host, server.port) as client:
            handle = client.submit(P.SUBMIT_JOB_BG, b"f", b"k", b"d")
        assert rows(server) == [(handle, b"f", b"k")]
        server.kill()
        server.start()
        assert queued(server, "f") == 1, "the default store did not replay the job"


@pytest.mark.timeout(60)
def test_foreground_jobs_are_never_stored(sqlite_target: Target) -> None:
    with GearshiftServer(store=sqlite_target.url) as server:
        clients = [Link(server.host, server.port) for _ in range(4)]
        try:
            clients[0].submit(P.SUBMIT_JOB, b"fg", b"u1", b"a")
            clients[1].submit(P.SUBMIT_JOB_HIGH, b"fg", b"u2", b"b")
            clients[2].submit(P.SUBMIT_JOB_LOW, b"fg", b"", b"c")
            clients[3].submit(P.SUBMIT_REDUCE_JOB, b"fg", b"u3", b"reducer", b"", b"d")
            assert queued(server, "fg") == 4          # queued, waiting for a worker...
            assert rows(server) == []                # ...but not stored
            # Control: the same connection's background job is in the same file.
            bg = clients[0].submit(P.SUBMIT_JOB_BG, b"bg", b"u4", b"e")
            assert rows(server) == [(bg, b"bg", b"u4")]
            server.kill()
        finally:
            for client in clients:
                client.close()
        server.start()
        assert queued(server, "fg") == 0, "a foreground job was replayed"
        assert queued(server, "bg") == 1


@pytest.mark.timeout(60)
def test_background_submission_joining_a_queued_foreground_job_is_stored(
        sqlite_target: Target) -> None:
    """JOB_CREATED for a background submission means stored, even when its unique key
    coalesces onto a foreground job whose client then leaves, or the server crashes."""
    with GearshiftServer(store=sqlite_target.url) as server:
        with Link(server.host, server.port) as fg:
            handle = fg.submit(P.SUBMIT_JOB, b"f", b"shared", b"x")
            with Link(server.host, server.port) as bg:
                assert bg.submit(P.SUBMIT_JOB_BG, b"f", b"shared", b"y") == handle
            assert rows(server) == [(handle, b"f", b"shared")]
        # The foreground client is gone; the background submitter still owns the job.
        assert queued(server, "f") == 1, "the job was dropped with its foreground client"
        server.kill()
        server.start()
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, b"f")
            got = worker.grab()
            assert got == [handle, b"f", b"shared", b"x"]
            worker.send(P.WORK_COMPLETE, handle, b"")
            assert worker.grab() is None


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_background_submission_joining_a_running_foreground_job() -> None:
    """The job finishes while its row is being written (PostgreSQL behind a stalled
    proxy, so the order is certain): the submitter gets JOB_CREATED after the commit and
    the row is then removed, not left to be replayed."""
    need_service(PG)
    name = private_name()
    with Proxy(address(PG)) as proxy, GearshiftServer(
            store=with_name("postgresql", retarget(PG, proxy.port), name)) as server:
        try:
            with Link(server.host, server.port) as fg, \
                    Link(server.host, server.port) as worker, \
                    Link(server.host, server.port) as bg:
                handle = fg.submit(P.SUBMIT_JOB, b"f", b"shared", b"x")
                worker.send(P.CAN_DO, b"f")
                assert worker.grab() == [handle, b"f", b"shared", b"x"]
                proxy.stall()
                bg.send(P.SUBMIT_JOB_BG, b"f", b"shared", b"y")
                # The server's write of the joined job is now stuck in the proxy.
                deadline = time.monotonic() + 10
                while not proxy.held():
                    assert time.monotonic() < deadline, "the joined job was never written"
                    time.sleep(0.01)
                worker.send(P.WORK_COMPLETE, handle, b"done")
                assert fg.read() == (P.WORK_COMPLETE, [handle, b"done"])
                proxy.restore()
                assert bg.read() == (P.JOB_CREATED, [handle])
                # An acknowledged submission after that proves the removal committed.
                bg.submit(P.SUBMIT_JOB_BG, b"marker", b"", b"")
            assert stored_count("postgresql", "", name) == 1, "the finished job's row remained"
        finally:
            drop("postgresql", name)
