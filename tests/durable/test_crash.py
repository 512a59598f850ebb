"""Crash test: SIGKILL a durable server under background load, restart, drain, compare.

Submitters pipeline background jobs (unique payload ids, NUL bytes in the data) as fast
as the server acknowledges them while one throttled worker runs some; the server is
killed with SIGKILL mid-load and restarted on the same store. The checks:

* none lost: every job whose JOB_CREATED reached a submitter ran, before the crash
  (WORK_COMPLETE sent) or after the restart;
* duplicates only for jobs running at the crash: a job reruns after the restart only if
  its completion may not have been committed yet. A completion is known to be committed
  when the server processed it (the worker saw the reply to the GRAB it pipelined after
  WORK_COMPLETE) before a submission that was later acknowledged was even sent: the
  group committer writes batches in order, so that acknowledgement proves the earlier
  remove is on disk;
* replayed jobs keep their handles, each is handed out once, and after a clean restart
  nothing finished is replayed again; new handles are never reused.
"""

from __future__ import annotations

import threading
import time

import pytest

from gearshift.protocol import encode_request
from gearshift.testing import GearshiftServer

from ._link import Link, P
from .conftest import Target

SUBMITTERS = 4
WINDOW = 8                      # submissions in flight per connection
MAX_PER_SUBMITTER = 5000        # bounds the count even on a fast machine
LOAD_S = 2.0
WORKER_PAUSE_S = 0.001          # the worker runs only some of the load
DRAIN_IDLE_S = 1.0
DRAIN_DEADLINE_S = 60.0
FUNC = b"crash"


class Load:
    """Submitter and worker threads; all of them stop when the server dies."""

    def __init__(self, server: GearshiftServer) -> None:
        self.server = server
        self.lock = threading.Lock()
        #: payload -> (handle, monotonic time the submission was sent), once acknowledged
        self.acked: dict[bytes, tuple[bytes, float]] = {}
        self.sent: set[bytes] = set()                 # every payload submitted
        self.errors: list[str] = []                   # unexpected replies
        self.assigned: dict[bytes, bytes] = {}        # payload -> handle, before the crash
        self.completed: set[bytes] = set()            # WORK_COMPLETE sent before the crash
        self.confirmed: dict[bytes, float] = {}       # payload -> time its completion was processed
        self.threads = [threading.Thread(target=self._submit, args=(k,), daemon=True)
                        for k in range(SUBMITTERS)]
        self.threads.append(threading.Thread(target=self._work, daemon=True))

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a load thread did not stop after the crash"

    def _submit(self, k: int) -> None:
        in_flight: list[tuple[bytes, float]] = []
        try:
            link = Link(self.server.host, self.server.port)
            n = 0
            while n < MAX_PER_SUBMITTER or in_flight:
                while n < MAX_PER_SUBMITTER and len(in_flight) < WINDOW:
                    payload = b"%d-%d\x00\xff" % (k, n)
                    unique = payload[:-2]
                    with self.lock:
                        self.sent.add(payload)
                    in_flight.append((payload, time.monotonic()))
                    link.send_raw(encode_request(P.SUBMIT_JOB_BG, FUNC, unique, payload))
                    n += 1
                kind, fields = link.read()
                payload, sent_at = in_flight.pop(0)   # replies come in submission order
                with self.lock:
                    if kind == P.JOB_CREATED:
                        self.acked[payload] = (fields[0], sent_at)
                    else:
                        self.errors.append(f"{P(kind).name} {fields!r}")
        except OSError:
            return  # the server was killed

    def _work(self) -> None:
        try:
            link = Link(self.server.host, self.server.port)
            link.send(P.CAN_DO, FUNC)
            link.send(P.GRAB_JOB_UNIQ)
            previous: bytes | None = None
            while True:
                kind, fields = link.read()
                now = time.monotonic()
                if previous is not None:
                    # This reply answers the GRAB sent after previous's WORK_COMPLETE.
                    with self.lock:
                        self.confirmed[previous] = now
                    previous = None
                if kind == P.NO_JOB:
                    time.sleep(0.005)
                    link.send(P.GRAB_JOB_UNIQ)
                    continue
                assert kind == P.JOB_ASSIGN_UNIQ, f"worker got {P(kind).name} {fields!r}"
                handle, _func, _unique, payload = fields
                with self.lock:
                    self.assigned[payload] = handle
                time.sleep(WORKER_PAUSE_S)
                link.send_raw(encode_request(P.WORK_COMPLETE, handle, b"ok")
                              + encode_request(P.GRAB_JOB_UNIQ))
                with self.lock:
                    self.completed.add(payload)
                previous = payload
        except OSError:
            return


def drain(server: GearshiftServer) -> list[tuple[bytes, bytes]]:
    """Run every queued job with one pipelining worker: (handle, payload) in run order."""
    ran: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    with Link(server.host, server.port) as link:
        link.send(P.CAN_DO, FUNC)
        idle_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - idle_since < DRAIN_IDLE_S:
            got = link.grab()
            if got is None:
                time.sleep(0.02)
                continue
            handle, _func, _unique, payload = got
            link.send(P.WORK_COMPLETE, handle, b"ok")
            ran.append((handle, payload))
            idle_since = time.monotonic()
        assert time.monotonic() < deadline, "drain did not finish in time"
        # Every WORK_COMPLETE above was processed before this echo came back.
        assert link.request(P.ECHO_REQ, b"sync") == (P.ECHO_RES, [b"sync"])
    return ran


@pytest.mark.storage
@pytest.mark.timeout(120)
def test_sigkill_under_load_loses_no_acknowledged_job(crash_target: Target) -> None:
    server = GearshiftServer(store=crash_target.url)
    with server:
        load = Load(server)
        load.start()
        time.sleep(LOAD_S)
        server.kill()
        load.join()

        assert not load.errors, f"submitters got errors under load: {load.errors[:3]}"
        acked = load.acked
        horizon = max(sent_at for _, sent_at in acked.values())
        durable_done = {p for p, t in load.confirmed.items() if t < horizon}
        backlog = set(acked) - load.completed
        print(f"\n{crash_target.scheme}: {len(load.sent)} sent, {len(acked)} acknowledged, "
              f"{len(load.completed)} completed before the kill ({len(durable_done)} known "
              f"committed), {len(backlog)} acknowledged and not yet run")
        # The test is only meaningful with real load and a real backlog at the crash.
        assert len(acked) >= 300, f"too little load before the crash: {len(acked)}"
        assert len(load.completed) >= 50, "the worker ran almost nothing before the crash"
        assert len(backlog) >= 100, "no backlog at the crash: nothing to replay"

        server.start()
        ran = drain(server)
        ran_payloads = [p for _, p in ran]
        after = set(ran_payloads)
        print(f"{crash_target.scheme}: {len(ran)} run after restart, "
              f"{len(after & load.completed)} of them had run before")

        lost = backlog - after
        assert not lost, f"{len(lost)} acknowledged jobs lost, e.g. {sorted(lost)[:3]}"
        assert len(ran_payloads) == len(after), "a replayed job was handed out twice"
        phantoms = after - load.sent
        assert not phantoms, f"jobs nobody submitted ran: {sorted(phantoms)[:3]}"
        rerun_committed = after & durable_done
        assert not rerun_committed, (
            f"{len(rerun_committed)} jobs whose completion was committed ran again, "
            f"e.g. {sorted(rerun_committed)[:3]}")
        reruns = after & load.completed
        assert reruns <= set(load.assigned), "a rerun job was never running before the crash"
        for handle, payload in ran:
            if payload in acked:
                assert handle == acked[payload][0], f"replayed {payload!r} under a new handle"
            if payload in load.assigned:
                assert handle == load.assigned[payload]

        # Everything run after the restart was removed durably: a clean restart replays
        # nothing, and the store is empty behind the server's back.
        server.stop()
        server.start()
        with Link(server.host, server.port) as link:
            link.send(P.CAN_DO, FUNC)
            assert link.grab() is None, "a finished job was replayed after a clean restart"
            fresh = link.submit(P.SUBMIT_JOB_BG, b"crash-after", b"", b"x")
        old_handles = {h for h, _ in acked.values()} | {h for h, _ in ran}
        assert fresh not in old_handles
        assert crash_target.count(server) == 1   # only the fresh job
