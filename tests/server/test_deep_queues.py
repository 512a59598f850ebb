"""Deep queues end to end: ``gearshift serve`` with a real SQLite store and a tiny
``--queue-memory``, so a few thousand jobs spill to the store. Order across priorities
and functions, coalescing onto spilled jobs, status answers, cancellation, a SIGKILL
and restart, and the number of jobs the broker holds in memory (admin ``memory``), not
timings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.protocol import encode_request
from gearshift.testing import GearshiftServer

from ._wire import P, Wire

#: 64 KiB: about 150 jobs in memory, pages of 20.
BUDGET = "64KiB"
#: Jobs in memory may exceed the budget by the heads being read back (a page and the
#: low-water mark per deep queue) and by jobs in flight through the store.
MEMORY_BOUND = 600


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GearshiftServer]:
    with GearshiftServer(store=f"sqlite://{tmp_path}/queue.db",
                         extra_args=["--queue-memory", BUDGET, "--keep-results", "0"],
                         startup_timeout=60) as srv:
        yield srv


def memory(srv: GearshiftServer) -> dict[str, int]:
    admin = Wire(srv.host, srv.port)
    try:
        reply = admin.admin(b"memory")
    finally:
        admin.close()
    assert reply.startswith(b"OK "), reply
    data: dict[str, int] = json.loads(reply[3:])
    return data


def admin_text(srv: GearshiftServer, line: bytes) -> bytes:
    admin = Wire(srv.host, srv.port)
    try:
        return admin.admin(line)
    finally:
        admin.close()


def submit_many(srv: GearshiftServer, jobs: list[tuple[int, bytes, bytes, bytes]]) -> list[bytes]:
    """Pipeline background submissions (packet type, function, unique, data) in
    windows of 200 and return their handles in order."""
    client = Wire(srv.host, srv.port, timeout=60)
    handles: list[bytes] = []
    try:
        for start in range(0, len(jobs), 200):
            part = jobs[start:start + 200]
            client.send_raw(b"".join(encode_request(t, f, u, d) for t, f, u, d in part))
            for _ in part:
                ptype, fields = client.recv()
                assert ptype == P.JOB_CREATED, (ptype, fields)
                handles.append(fields[0])
    finally:
        client.close()
    return handles


def drain(srv: GearshiftServer, functions: list[bytes], count: int,
          sample: list[int] | None = None) -> list[tuple[bytes, bytes]]:
    """One worker doing ``functions`` takes and completes ``count`` jobs; returns
    (function, data) in the order they were handed out. Every 100 jobs the broker's
    jobs in memory go to ``sample``."""
    worker = Wire(srv.host, srv.port, timeout=30)
    got: list[tuple[bytes, bytes]] = []
    try:
        for name in functions:
            worker.send(P.CAN_DO, name)
        while len(got) < count:
            ptype, fields = worker.call(P.GRAB_JOB)
            if ptype == P.NO_JOB:
                # A page is being read: sleep until woken, as real workers do.
                worker.send(P.PRE_SLEEP)
                assert worker.recv(20) == (P.NOOP, [])
                continue
            assert ptype == P.JOB_ASSIGN, (ptype, fields)
            handle, function, data = fields
            got.append((function, data))
            worker.send(P.WORK_COMPLETE, handle, b"")
            if sample is not None and len(got) % 100 == 0:
                sample.append(memory(srv)["jobs_in_memory"])
    finally:
        worker.close()
    return got


KINDS = ((P.SUBMIT_JOB_LOW_BG, b"low"), (P.SUBMIT_JOB_BG, b"normal"),
         (P.SUBMIT_JOB_HIGH_BG, b"high"))


def mixed_jobs(per: int) -> list[tuple[int, bytes, bytes, bytes]]:
    """``per`` jobs of each of two functions at each priority, interleaved."""
    jobs = []
    for n in range(per):
        for ptype, level in KINDS:
            for name in (b"alpha", b"beta"):
                key = b"%s-%s-%d" % (name, level, n)
                jobs.append((ptype, name, key, key))
    return jobs


def in_order(got: list[tuple[bytes, bytes]], name: bytes, per: int) -> None:
    """``name``'s jobs came high first, then normal, then low, each in submission order."""
    mine = [data for function, data in got if function == name]
    assert mine == [b"%s-%s-%d" % (name, level, n) for level in (b"high", b"normal", b"low")
                    for n in range(per)]


@pytest.mark.timeout(240)
def test_spilled_jobs_keep_their_order_and_memory_stays_bounded(
        server: GearshiftServer) -> None:
    per = 500
    submit_many(server, mixed_jobs(per))
    total = 6 * per
    mem = memory(server)
    assert mem["spilled"] >= total - MEMORY_BOUND, mem
    assert mem["jobs_in_memory"] + mem["spilled"] == total
    assert mem["jobs_in_memory"] <= MEMORY_BOUND
    status = admin_text(server, b"status")
    assert b"alpha\t1500\t0\t0\n" in status
    assert b"beta\t1500\t0\t0\n" in status
    prio = admin_text(server, b"prioritystatus")
    assert b"alpha\t500\t500\t500\t0\n" in prio
    assert admin_text(server, b"show jobs").count(b"\n") == total + 1

    sample: list[int] = []
    got = drain(server, [b"alpha", b"beta"], total, sample)
    in_order(got, b"alpha", per)
    in_order(got, b"beta", per)
    # Round robin across the two deep functions throughout, not one after the other.
    first = [function for function, _ in got[:600]]
    assert first.count(b"alpha") > 200
    assert first.count(b"beta") > 200
    assert max(sample) <= MEMORY_BOUND, sample
    assert memory(server)["spilled"] == 0
    assert memory(server)["pages_read"] > 50
    assert b"alpha\t0\t0\t" in admin_text(server, b"status")


@pytest.mark.timeout(240)
def test_submissions_coalesce_onto_spilled_jobs(server: GearshiftServer) -> None:
    jobs = [(P.SUBMIT_JOB_BG, b"deep", b"key-%d" % n, b"data-%d" % n) for n in range(2000)]
    handles = submit_many(server, jobs)
    assert memory(server)["spilled"] > 1500
    client = Wire(server.host, server.port)
    fg = Wire(server.host, server.port)
    try:
        # A background submission of a spilled job's key gets the spilled job's handle.
        assert client.call(P.SUBMIT_JOB_BG, b"deep", b"key-1900", b"other") == (
            P.JOB_CREATED, [handles[1900]])
        # So does the same key at another priority.
        assert client.call(P.SUBMIT_JOB_HIGH_BG, b"deep", b"key-1950", b"x") == (
            P.JOB_CREATED, [handles[1950]])
        # A foreground client joins the spilled job and gets its result later.
        assert fg.call(P.SUBMIT_JOB, b"deep", b"key-1990", b"x") == (
            P.JOB_CREATED, [handles[1990]])
        # Status of spilled jobs, by handle and by unique key.
        assert client.call(P.GET_STATUS, handles[1800]) == (
            P.STATUS_RES, [handles[1800], b"1", b"0", b"0", b"0"])
        assert client.call(P.GET_STATUS_UNIQUE, b"key-1801") == (
            P.STATUS_RES_UNIQUE, [b"key-1801", b"1", b"0", b"0", b"0", b"0"])
        assert memory(server)["jobs_in_memory"] + memory(server)["spilled"] == 2000
        got = drain(server, [b"deep"], 2000)
        assert [d for _, d in got] == [b"data-%d" % n for n in range(2000)]
        assert fg.recv(30) == (P.WORK_COMPLETE, [handles[1990], b""])
    finally:
        client.close()
        fg.close()


@pytest.mark.timeout(240)
def test_cancelling_a_spilled_job(server: GearshiftServer) -> None:
    handles = submit_many(server, [(P.SUBMIT_JOB_BG, b"deep", b"c%d" % n, b"%d" % n)
                                   for n in range(1000)])
    assert admin_text(server, b"cancel job " + handles[900]) == b"OK\r\n"
    assert admin_text(server, b"cancel job " + handles[900]) == b"ERR UNKNOWN_JOB\r\n"
    assert b"deep\t999\t0\t0\n" in admin_text(server, b"status")
    got = drain(server, [b"deep"], 999)
    assert b"900" not in [d for _, d in got]


@pytest.mark.timeout(300)
def test_sigkill_and_restart_lose_nothing_and_load_only_windows(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/queue.db"
    args = ["--queue-memory", BUDGET, "--keep-results", "0"]
    srv = GearshiftServer(store=url, extra_args=args, startup_timeout=60)
    try:
        srv.start()
        per = 300
        submit_many(srv, mixed_jobs(per))
        # Some are taken and completed before the crash; the rest must all come back.
        done = drain(srv, [b"alpha", b"beta"], 100)
        srv.kill()
        srv.start()
        mem = memory(srv)
        assert mem["jobs_in_memory"] <= MEMORY_BOUND, mem
        left = mem["jobs_in_memory"] + mem["spilled"]
        # Completions whose removal was not committed yet run again (at-least-once).
        assert 6 * per - 100 <= left <= 6 * per
        rest = drain(srv, [b"alpha", b"beta"], left)
        assert {d for _, d in done + rest} == {d for _, _, _, d in mixed_jobs(per)}
        rank = {level: i for i, level in enumerate((b"high", b"normal", b"low"))}
        for name in (b"alpha", b"beta"):
            order = [(rank[d.split(b"-")[1]], int(d.split(b"-")[2]))
                     for f, d in rest if f == name]
            assert order == sorted(order)
        assert memory(srv)["spilled"] == 0
    finally:
        srv.stop()


@pytest.mark.timeout(120)
def test_the_memory_store_keeps_every_job_in_memory() -> None:
    with GearshiftServer(store="memory", extra_args=["--queue-memory", BUDGET, "--verbose",
                                                     "WARNING"]) as srv:
        submit_many(srv, [(P.SUBMIT_JOB_BG, b"f", b"", b"%d" % n) for n in range(1000)])
        mem = memory(srv)
        assert mem["spilled"] == 0
        assert mem["jobs_in_memory"] == 1000
        assert "--queue-memory is ignored" in srv.read_log()
