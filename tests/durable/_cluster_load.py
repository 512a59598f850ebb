"""Load for several servers on one store: failing-over submitters, reconnecting workers.

Every job has a unique id (its unique key and payload). Submitters pipeline background
submissions to one server and move on to the next when it dies; workers are connected
to every server and reconnect when theirs goes away. Everything is recorded with the
monotonic time it happened, so a test can tell what ran where, when, and how often.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from gearshift.protocol import encode_request
from gearshift.testing import GearshiftServer

from ._link import Link, P

FUNC = b"cluster"
WINDOW = 8                 # submissions in flight per submitter


@dataclass(frozen=True)
class Run:
    """One assignment of a job to a worker."""

    handle: bytes
    server: int      # index of the server the worker was connected to
    at: float        # monotonic time the assignment arrived


class ClusterLoad:
    """Submitter and worker threads over ``servers`` (indexes into the list)."""

    def __init__(self, servers: list[GearshiftServer], submitters: int = 2,
                 workers_per_server: int = 1, max_per_submitter: int = 100_000,
                 pauses: list[float] | None = None) -> None:
        self.servers = servers
        #: seconds each server's workers spend per job
        self.pauses = pauses or [0.0] * len(servers)
        self.max_per_submitter = max_per_submitter
        self.lock = threading.Lock()
        self.stop_submitting = threading.Event()
        self.stop_working = threading.Event()
        #: unique -> (handle, server index, time the submission was sent), once acked
        self.acked: dict[bytes, tuple[bytes, int, float]] = {}
        self.errors: list[str] = []
        self.runs: dict[bytes, list[Run]] = defaultdict(list)
        self.threads = [threading.Thread(target=self._submit, args=(k,), daemon=True)
                        for k in range(submitters)]
        self.threads += [threading.Thread(target=self._work, args=(i,), daemon=True)
                         for i in range(len(servers)) for _ in range(workers_per_server)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_submitting.set()
        self.stop_working.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a load thread did not stop"

    def wait_all_ran(self, timeout: float) -> set[bytes]:
        """Wait until every acknowledged job ran once at least; the ones that did not."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                missing = set(self.acked) - set(self.runs)
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.1)

    def twice(self) -> dict[bytes, list[Run]]:
        with self.lock:
            return {u: list(r) for u, r in self.runs.items() if len(r) > 1}

    # ------------------------------------------------------------------ threads

    def _submit(self, k: int) -> None:
        target = k % len(self.servers)
        n = 0
        while not self.stop_submitting.is_set() and n < self.max_per_submitter:
            server = self.servers[target]
            in_flight: list[tuple[bytes, float]] = []
            try:
                with Link(server.host, server.port, timeout=5.0) as link:
                    while not self.stop_submitting.is_set() or in_flight:
                        while (not self.stop_submitting.is_set() and len(in_flight) < WINDOW
                               and n < self.max_per_submitter):
                            unique = b"%d-%d" % (k, n)
                            n += 1
                            in_flight.append((unique, time.monotonic()))
                            link.send_raw(encode_request(P.SUBMIT_JOB_BG, FUNC, unique,
                                                         unique))
                        if not in_flight:
                            break
                        kind, fields = link.read()
                        unique, sent = in_flight.pop(0)  # replies in submission order
                        with self.lock:
                            if kind == P.JOB_CREATED:
                                self.acked[unique] = (fields[0], target, sent)
                            else:
                                self.errors.append(f"{P(kind).name} {fields!r}")
                    return
            except OSError:
                # The server died: what was in flight is not acknowledged; fail over.
                target = (target + 1) % len(self.servers)
                time.sleep(0.05)

    def _work(self, index: int) -> None:
        server = self.servers[index]
        while not self.stop_working.is_set():
            try:
                link = Link(server.host, server.port, timeout=0.5)
            except OSError:
                time.sleep(0.1)
                continue
            try:
                link.send(P.CAN_DO, FUNC)
                link.send(P.GRAB_JOB_UNIQ)
                while not self.stop_working.is_set():
                    try:
                        kind, fields = link.read()
                    except TimeoutError:
                        continue
                    if kind == P.NO_JOB:
                        link.send(P.PRE_SLEEP)
                    elif kind == P.NOOP:
                        link.send(P.GRAB_JOB_UNIQ)
                    elif kind == P.JOB_ASSIGN_UNIQ:
                        handle, _func, unique, _data = fields
                        with self.lock:
                            self.runs[unique].append(Run(handle, index, time.monotonic()))
                        if self.pauses[index]:
                            time.sleep(self.pauses[index])
                        link.send_raw(encode_request(P.WORK_COMPLETE, handle, b"ok")
                                      + encode_request(P.GRAB_JOB_UNIQ))
                    else:
                        with self.lock:
                            self.errors.append(f"worker got {P(kind).name} {fields!r}")
            except OSError:
                time.sleep(0.1)  # the server died or closed: reconnect
            finally:
                link.close()
