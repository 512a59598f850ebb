"""Several servers on one PostgreSQL store: exactly once, adoption, fencing.

Real ``gearshift serve`` processes share one private table set; workers are connected to
every server, submitters fail over between them (tests/durable/_cluster_load.py). The
lease is short (2 s) to keep the suite quick; it is judged by the database's clock.

* two servers under continuous load, nobody dies: every acknowledged job runs exactly
  once (no server replays or runs another's jobs);
* three servers, one SIGKILLed under load and later restarted: no acknowledged job is
  lost, the dead server's queued jobs start elsewhere before it comes back (the delay
  is printed: target <= 2x the lease), and only jobs running at the kill run twice;
* fencing: a server SIGSTOPped past its lease whose jobs were adopted hands out none of
  them when continued, says so in its log and exits with status 3;
* a clean shutdown hands its lease back: a live server adopts the jobs at once;
* a job table from before owners existed is taken over by the first server;
* the database away for longer than the lease: no job is handed out meanwhile, and
  dispatch resumes by itself when it is back (nobody adopted the jobs);
* ``gearshift admin --cluster`` and ``GET /api/cluster`` list the servers and their
  leases, and who adopted whom;
* SQLite stays one server's store: a second server on the same file and table is
  refused at startup with a clear message.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from gearshift.testing import GearshiftServer, free_port

from ._cluster_load import FUNC, ClusterLoad
from ._link import Link, P
from ._proxy import Proxy
from ._services import PG, address, drop, need_service, private_name, retarget, with_name
from .conftest import Target

LEASE = 2.0
ARGS = ["--lease", f"{LEASE:g}s", "--verbose", "INFO"]


def servers(target: Target, n: int) -> list[GearshiftServer]:
    return [GearshiftServer(store=target.url, extra_args=ARGS) for _ in range(n)]


def stop_all(group: list[GearshiftServer]) -> None:
    for server in group:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.pid, signal.SIGCONT)  # a stopped process cannot take SIGTERM
        server.__exit__(None, None, None)


def report(load: ClusterLoad, label: str) -> tuple[set[bytes], dict[bytes, list]]:
    missing = load.wait_all_ran(60.0)
    time.sleep(1.0)  # a duplicate would show up now
    load.stop()
    twice = load.twice()
    ran_on = [0] * len(load.servers)
    for runs in load.runs.values():
        ran_on[runs[0].server] += 1
    print(f"\n{label}: {len(load.acked)} acknowledged, lost {len(missing)}, "
          f"run twice {len(twice)}, first runs per server {ran_on}")
    assert not load.errors, f"unexpected replies: {load.errors[:3]}"
    return missing, twice


@pytest.mark.storage
@pytest.mark.timeout(120)
def test_two_servers_one_store_run_every_job_exactly_once(pg_target: Target) -> None:
    group = servers(pg_target, 2)
    try:
        for server in group:
            server.start()
        load = ClusterLoad(group, submitters=4, workers_per_server=2)
        load.start()
        time.sleep(12.0)  # several lease renewals under load
        load.stop_submitting.set()
        missing, twice = report(load, "two servers, 12 s")
        assert len(load.acked) >= 500, "too little load to mean anything"
        assert not missing, f"{len(missing)} acknowledged jobs never ran"
        assert not twice, f"{len(twice)} jobs ran twice, e.g. {list(twice.items())[:2]}"
        # Workers on both servers did work: the servers really shared the load.
        assert all(any(r[0].server == i for r in load.runs.values()) for i in range(2))
        for server in group:
            assert server.stop() == 0
    finally:
        stop_all(group)


@pytest.mark.storage
@pytest.mark.timeout(120)
def test_sigkill_one_of_three_loses_nothing_and_its_jobs_run_elsewhere(
        pg_target: Target) -> None:
    group = servers(pg_target, 3)
    try:
        for server in group:
            server.start()
        # A slow worker on the server to be killed: a backlog builds up there, which the
        # others (fast workers, short queues) must adopt and start promptly.
        load = ClusterLoad(group, submitters=3, workers_per_server=1,
                           pauses=[0.01, 0.0, 0.0])
        load.start()
        time.sleep(3.0)
        group[0].kill()
        killed_at = time.monotonic()
        with load.lock:
            orphans = {u for u, (_, server, _) in load.acked.items()
                       if server == 0 and u not in load.runs}
        time.sleep(3 * LEASE)
        with load.lock:
            elsewhere = [r.at for u in orphans for r in load.runs.get(u, ())
                         if r.server != 0 and r.at > killed_at]
        group[0].start()  # restarted: it must not run what was adopted
        time.sleep(2.0)
        load.stop_submitting.set()
        missing, twice = report(load, "three servers, one SIGKILLed")
        delay = min(elsewhere) - killed_at if elsewhere else float("inf")
        print(f"killed server had {len(orphans)} queued jobs; the first started elsewhere "
              f"{delay:.2f}s after the kill (lease {LEASE:g}s)")
        assert len(orphans) >= 20, "the killed server had no backlog: nothing to adopt"
        assert elsewhere, "the dead server's jobs did not run elsewhere before its restart"
        assert not missing, f"{len(missing)} acknowledged jobs lost, e.g. {sorted(missing)[:3]}"
        # Run twice only if its first run was on the killed server, before the kill.
        for unique, runs in twice.items():
            assert runs[0].server == 0, (unique, runs)
            assert runs[0].at < killed_at, (unique, runs)
            assert len(runs) == 2, f"{unique!r} ran {len(runs)} times"
    finally:
        stop_all(group)


def _submit(server: GearshiftServer, count: int, tag: bytes) -> list[bytes]:
    with Link(server.host, server.port) as link:
        return [link.submit(P.SUBMIT_JOB_BG, FUNC, b"%s-%d" % (tag, i), b"x")
                for i in range(count)]


def _run_all(server: GearshiftServer, expect: int, timeout: float) -> list[bytes]:
    """Handles a worker on ``server`` ran, until ``expect`` of them or the timeout."""
    ran: list[bytes] = []
    deadline = time.monotonic() + timeout
    with Link(server.host, server.port) as link:
        link.send(P.CAN_DO, FUNC)
        while len(ran) < expect and time.monotonic() < deadline:
            got = link.grab()
            if got is None:
                time.sleep(0.05)
                continue
            ran.append(got[0])
            link.send(P.WORK_COMPLETE, got[0], b"")
        assert link.request(P.ECHO_REQ, b"x") == (P.ECHO_RES, [b"x"])
    return ran


@pytest.mark.storage
@pytest.mark.timeout(90)
def test_paused_server_is_fenced_and_runs_nothing_adopted(pg_target: Target) -> None:
    a, b = group = servers(pg_target, 2)
    try:
        a.start()
        b.start()
        handles = _submit(a, 20, b"fence")
        worker = Link(a.host, a.port, timeout=10.0)
        worker.send(P.CAN_DO, FUNC)
        os.kill(a.pid, signal.SIGSTOP)
        try:
            ran = _run_all(b, len(handles), 4 * LEASE)  # b adopts a's jobs
            assert sorted(ran) == sorted(handles), "b did not adopt every job of a"
            # Sent while a is stopped: the first thing a reads when it continues.
            worker.send(P.GRAB_JOB_UNIQ)
        finally:
            os.kill(a.pid, signal.SIGCONT)
        try:
            kind, fields = worker.read()
            assert kind == P.NO_JOB, f"the fenced server handed out {P(kind).name} {fields}"
        except ConnectionError:
            pass  # it closed the connection first: also nothing handed out
        worker.close()
        assert a.proc is not None
        assert a.proc.wait(10) == 3, "a fenced server must exit with status 3"
        log = a.read_log()
        assert "lost its lease" in log, log[-2000:]
        assert "stopping now" in log, log[-2000:]
        # a comes back with a new epoch, owns nothing, and nothing runs a second time.
        a.start()
        assert _run_all(a, 1, 1.0) == []
    finally:
        stop_all(group)


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_clean_shutdown_hands_jobs_to_a_live_server_at_once(pg_target: Target) -> None:
    # a's lease is a minute: only its release can make b adopt within the test.
    a = GearshiftServer(store=pg_target.url, extra_args=["--lease", "60s"])
    b = GearshiftServer(store=pg_target.url, extra_args=ARGS)
    group = [a, b]
    try:
        a.start()
        b.start()
        handles = _submit(a, 10, b"clean")
        assert a.stop() == 0
        started = time.monotonic()
        ran = _run_all(b, len(handles), 10.0)
        print(f"\nadopted after a clean shutdown in {time.monotonic() - started:.2f}s")
        assert sorted(ran) == sorted(handles)
    finally:
        stop_all(group)


async def _old_layout(table: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(
            f"CREATE TABLE {table} (seq BIGSERIAL PRIMARY KEY, handle BYTEA NOT NULL UNIQUE, "
            "function BYTEA NOT NULL, unique_key BYTEA NOT NULL, data BYTEA NOT NULL, "
            "priority SMALLINT NOT NULL, when_to_run BIGINT NOT NULL, reducer BYTEA NOT NULL, "
            "retries INTEGER NOT NULL)")
        await conn.execute(f"INSERT INTO {table} (handle, function, unique_key, data, "
                           "priority, when_to_run, reducer, retries) VALUES "
                           "('H:old:1.1', $1, 'u', 'd', 1, 0, '', 0)", FUNC)
    finally:
        await conn.close()


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_table_without_owners_is_taken_by_the_first_server(pg_target: Target) -> None:
    asyncio.run(_old_layout(pg_target.name))
    with GearshiftServer(store=pg_target.url, extra_args=ARGS) as server:
        assert _run_all(server, 1, 5.0) == [b"H:old:1.1"]


@pytest.mark.timeout(60)
def test_sqlite_refuses_a_second_server_on_the_same_file(tmp_path: pathlib.Path) -> None:
    url = f"sqlite:///{tmp_path}/queue.db"
    with GearshiftServer(store=url) as first:
        second = GearshiftServer(store=url)
        try:
            with pytest.raises(RuntimeError, match="in use by another gearshift server"):
                second.start()
            assert f"pid {first.pid}" in second.read_log()
            # Another table in the same file is another store.
            with GearshiftServer(store=url + "?table=other") as other:
                assert other.proc is not None
        finally:
            second.__exit__(None, None, None)
    # The lock went with the first server.
    with GearshiftServer(store=url) as again:
        assert _run_all(again, 1, 0.5) == []


@pytest.mark.storage
@pytest.mark.timeout(90)
def test_database_away_longer_than_the_lease_pauses_dispatch_then_resumes() -> None:
    need_service(PG)
    name = private_name()
    with Proxy(address(PG)) as proxy:
        url = with_name("postgresql", retarget(PG, proxy.port), name)
        try:
            with GearshiftServer(store=url, extra_args=ARGS) as server:
                handles = _submit(server, 5, b"away")
                with Link(server.host, server.port, timeout=20.0) as worker:
                    worker.send(P.CAN_DO, FUNC)
                    proxy.cut()
                    time.sleep(LEASE * 1.5)  # the lease may have run out: nothing goes out
                    assert worker.grab() is None
                    worker.send(P.PRE_SLEEP)
                    proxy.restore()
                    # The next renewal succeeds (nobody adopted the jobs): the sleeping
                    # worker is woken and the jobs run here.
                    kind, _ = worker.read()
                    assert kind == P.NOOP
                    ran = [worker.grab() for _ in handles]
                    assert sorted(g[0] for g in ran if g) == sorted(handles)
                assert server.proc is not None
                assert server.proc.poll() is None, "the server must not stop"
                assert "lease renewal failed" in server.read_log()
        finally:
            drop("postgresql", name)


def _admin_cluster(server: GearshiftServer, *more: str) -> str:
    out = subprocess.run([sys.executable, "-m", "gearshift", "admin", "-h",
                          f"{server.host}:{server.port}", "--cluster", *more],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout


@pytest.mark.storage
@pytest.mark.timeout(60)
def test_admin_shows_the_cluster_and_who_adopted_whom(pg_target: Target) -> None:
    http = free_port()
    a = GearshiftServer(store=pg_target.url, extra_args=ARGS)
    b = GearshiftServer(store=pg_target.url, extra_args=[*ARGS, "--http-port", str(http)])
    group = [a, b]
    try:
        a.start()
        b.start()
        ids = {s: f"{socket.gethostname()}:{s.port}" for s in group}
        time.sleep(LEASE)  # a renewal has run on both
        listing = _admin_cluster(b)
        assert listing.splitlines()[0].split() == ["SERVER", "EPOCH", "EXPIRES_IN",
                                                  "ADOPTED_BY", "THIS"]
        rows = {line.split()[0]: line.split() for line in listing.splitlines()[1:]}
        assert set(rows) == set(ids.values())
        assert rows[ids[b]][-1] == "yes"
        assert rows[ids[a]][3] == "-"
        a.kill()
        deadline = time.monotonic() + 4 * LEASE
        while time.monotonic() < deadline:
            record = {r["server_id"]: r for r in
                      json.loads(_admin_cluster(b, "--json"))["cluster"]}
            if record[ids[a]]["adopted_by"]:
                break
            time.sleep(0.3)
        assert record[ids[a]]["adopted_by"] == ids[b]
        assert record[ids[a]]["expires_in"] < 0
        assert record[ids[b]]["expires_in"] > 0
        assert record[ids[b]]["is_self"] is True
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/cluster", timeout=10) as r:
            api = {row["server_id"]: row for row in json.load(r)}
        assert api[ids[a]]["adopted_by"] == ids[b]
        assert api[ids[b]]["self"] is True
    finally:
        stop_all(group)
