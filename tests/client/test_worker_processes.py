"""A blocking worker in several forked processes: CPU-bound jobs run in parallel."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from gearshift.client import Client, Job, Worker, WorkerProcesses
from gearshift.testing import ServerProcess

Names = Callable[[str], str]


def test_jobs_spread_over_processes(server: ServerProcess, fname: Names) -> None:
    def whoami(job: Job) -> bytes:
        end = time.monotonic() + 0.4
        while time.monotonic() < end:  # busy: threads could not overlap this
            pass
        return b"%d" % os.getpid()

    worker = Worker([server.address])
    worker.register(fname(), whoami)
    with WorkerProcesses(worker, 3).start() as pool, \
            Client([server.address], timeout=20) as client:
        assert len(pool.pids) == 3
        tasks = client.task_set()
        for i in range(6):
            tasks.add(fname(), b"%d" % i)
        started = time.monotonic()
        pids = {int(result) for result in tasks.results()}
        elapsed = time.monotonic() - started
        pool.stop()
        assert pool.wait(15) == [0, 0, 0]  # SIGTERM: graceful exit
    assert pids <= set(pool.pids)
    assert len(pids) >= 2
    assert os.getpid() not in pids
    assert elapsed < 6 * 0.4
