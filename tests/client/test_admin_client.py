"""The admin client against gearshift and gearmand: every command, parsed into dataclasses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gearshift.client import AdminClient, AdminError, Client, Priority, ServerError
from gearshift.testing import ServerProcess

Names = Callable[[str], str]


def test_version_and_pid(server: ServerProcess) -> None:
    with AdminClient(server.address) as admin:
        assert admin.version()
        assert admin.getpid() == server.pid
        assert admin.verbose()


def test_queue_listings(server: ServerProcess, fname: Names) -> None:
    with Client([server.address], timeout=10) as client, AdminClient(server.address) as admin:
        handles = [client.submit_background(fname(), b"", priority=p, unique=fname(p.value))
                   for p in (Priority.HIGH, Priority.NORMAL, Priority.NORMAL, Priority.LOW)]
        # the second NORMAL submission coalesced onto the first (same unique key)
        assert handles[1] == handles[2]
        status = {s.function: s for s in admin.status()}[fname()]
        assert (status.total, status.running, status.workers) == (3, 0, 0)
        prio = {s.function: s for s in admin.priority_status()}[fname()]
        assert (prio.high, prio.normal, prio.low, prio.workers) == (1, 1, 1, 0)
        jobs = {j.handle: j for j in admin.show_jobs()}
        for handle in set(handles):
            job = jobs[handle.decode()]
            assert job.queued
            assert not job.ignored
        uniques = set(admin.show_unique_jobs())
        assert {fname(p) for p in ("high", "normal", "low")} <= uniques
        for handle in set(handles):
            admin.cancel_job(handle.decode())
        # gearshift forgets a cancelled job; gearmand keeps it flagged "ignored" until a
        # worker reaches it (gearmand.md 2.5)
        after = {j.handle: j for j in admin.show_jobs()}
        for handle in set(handles):
            assert handle.decode() not in after or after[handle.decode()].ignored


def test_errors_raise(server: ServerProcess, fname: Names) -> None:
    with AdminClient(server.address) as admin:
        with pytest.raises(AdminError) as info:
            admin.cancel_job("H:nowhere:1")
        assert info.value.code == "UNKNOWN_JOB"
        with pytest.raises(AdminError):
            admin.drop_function(fname("never-created"))
        with pytest.raises(AdminError) as unknown:
            admin.command("frobnicate")
        assert unknown.value.code == "UNKNOWN_COMMAND"
        # the connection is still in step after errors
        assert admin.getpid() == server.pid


def test_create_drop_function_and_maxqueue(server: ServerProcess, fname: Names) -> None:
    with AdminClient(server.address) as admin, Client([server.address], timeout=10) as client:
        admin.create_function(fname())
        assert fname() in {s.function for s in admin.status()}
        admin.drop_function(fname())
        assert fname() not in {s.function for s in admin.status()}
        admin.create_function(fname("q"))  # maxqueue ignores functions it does not know
        admin.maxqueue(fname("q"), 1)
        client.submit_background(fname("q"), b"1")
        with pytest.raises(ServerError) as info:
            client.submit_background(fname("q"), b"2")
        assert info.value.code == b"QUEUE_ERROR"
        admin.maxqueue(fname("q"))  # no limit again
        client.submit_background(fname("q"), b"3")
        with pytest.raises(ValueError, match="maxqueue"):
            admin.maxqueue(fname("q"), 1, 2)


def test_workers_lists_client_connections(server: ServerProcess, fname: Names) -> None:
    with AdminClient(server.address) as admin:
        rows = admin.workers()
    assert rows  # at least the admin connection itself
    assert all(row.ip and row.fd >= 0 for row in rows)
