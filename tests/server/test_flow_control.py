"""Flow control end to end (issue 21): real servers, real gearshift workers in threads,
the admin port and ``gearshift admin`` for pauses and limits, the SQLite store across a
restart."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gearshift import AdminClient, Client, Job, ServerError, Worker
from gearshift.testing import GearshiftServer, wait_until


class Gauge:
    """Counts a function's handlers running at once, across worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.done = 0
        self.starts: list[float] = []

    def handler(self, seconds: float) -> Callable[[Job], bytes]:
        def run(job: Job) -> bytes:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
                self.starts.append(time.monotonic())
            time.sleep(seconds)
            with self.lock:
                self.now -= 1
                self.done += 1
            return job.data

        return run


@contextmanager
def workers(address: str, count: int, functions: dict[str, Callable[[Job], bytes]]
            ) -> Iterator[list[Worker]]:
    """``count`` gearshift workers, each its own connection and thread."""
    started = []
    for _ in range(count):
        worker = Worker([address])
        for name, handler in functions.items():
            worker.register(name, handler)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
    try:
        yield [w for w, _ in started]
    finally:
        for worker, _ in started:
            worker.stop()
        for _, thread in started:
            thread.join(10)


def _running(admin: AdminClient, function: str) -> int:
    return next((s.running for s in admin.status() if s.function == function), 0)


def _registered(admin: AdminClient, function: str, count: int) -> bool:
    return any(s.function == function and s.workers == count for s in admin.status())


def test_concurrency_limit_holds_across_six_workers_and_every_job_is_done() -> None:
    gauge = Gauge()
    with GearshiftServer(extra_args=["--concurrency", "slow=2"]) as srv, \
            AdminClient(srv.address) as admin, \
            workers(srv.address, 6, {"slow": gauge.handler(0.15)}):
        wait_until(lambda: _registered(admin, "slow", 6), timeout=10)
        with Client([srv.address], timeout=30) as client:
            for i in range(12):
                client.submit_background("slow", b"%d" % i)
        sampled = []
        deadline = time.monotonic() + 30
        while gauge.done < 12 and time.monotonic() < deadline:
            sampled.append(_running(admin, "slow"))
            time.sleep(0.02)
        assert gauge.done == 12
        assert max(sampled) <= 2
        assert 2 in sampled  # the limit is a limit, not a lock: two did run together
        assert gauge.peak == 2
        limits = admin.limits()
        assert [(x.function, x.concurrency, x.running, x.queued) for x in limits] == [
            ("slow", 2, 0, 0)]


def test_rate_limit_spaces_job_starts() -> None:
    gauge = Gauge()
    with GearshiftServer(extra_args=["--rate", "tick=5/s"]) as srv, \
            AdminClient(srv.address) as admin, \
            workers(srv.address, 4, {"tick": gauge.handler(0.0)}):
        wait_until(lambda: _registered(admin, "tick", 4), timeout=10)
        with Client([srv.address], timeout=30) as client:
            started = time.monotonic()
            tasks = client.task_set()
            for i in range(20):
                tasks.add("tick", b"%d" % i)
            assert len(tasks.results()) == 20
            elapsed = time.monotonic() - started
    # A burst of 5, then 15 more at 5 a second: 3.0 s in theory.
    assert 2.9 <= elapsed <= 5.0, elapsed
    assert gauge.done == 20
    first = gauge.starts[0]
    assert sum(1 for t in gauge.starts if t - first < 0.5) <= 7  # the burst, then spaced


def test_a_paused_function_runs_nothing_until_resumed_then_everything() -> None:
    gauge, other = Gauge(), Gauge()
    with GearshiftServer() as srv, AdminClient(srv.address) as admin, \
            workers(srv.address, 3, {"held": gauge.handler(0.0),
                                     "free": other.handler(0.0)}):
        wait_until(lambda: _registered(admin, "held", 3), timeout=10)
        admin.pause("held")
        with Client([srv.address], timeout=30) as client:
            for i in range(5):
                client.submit_background("held", b"%d" % i)
                client.submit_background("free", b"%d" % i)
        # The other function's jobs go out (to the same workers); the paused ones wait.
        wait_until(lambda: other.done == 5, timeout=10)
        time.sleep(0.5)
        assert gauge.done == 0
        status = {s.function: s for s in admin.status()}
        assert (status["held"].total, status["held"].running) == (5, 0)
        assert [(x.function, x.paused, x.held, x.queued) for x in admin.limits()] == [
            ("held", True, True, 5)]
        admin.resume("held")
        wait_until(lambda: gauge.done == 5, timeout=10)
        assert admin.limits() == []  # nothing left to report


def test_admin_cli_pauses_resumes_and_lists(tmp_path: object) -> None:
    with GearshiftServer(extra_args=["--concurrency", "a*=3"]) as srv:
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "gearshift", "admin", "-h",
                                   srv.address, *args], capture_output=True, text=True,
                                  timeout=30, check=False)

        assert cli("--pause", "alpha").stdout == "OK\n"
        shown = cli("--limits")
        assert shown.returncode == 0
        lines = shown.stdout.splitlines()
        assert lines[0].split() == ["FUNCTION", "CONCURRENCY", "RATE", "WEIGHT", "PAUSED",
                                    "RUNNING", "QUEUED", "HELD", "ADMIN"]
        assert lines[1].split() == ["alpha", "3", "-", "1", "yes", "0", "0", "no", "paused"]
        assert cli("--resume", "alpha").returncode == 0
        assert "alpha" not in cli("--limits").stdout
        with AdminClient(srv.address) as admin:
            from gearshift.client import AdminError

            with pytest.raises(AdminError, match="rate"):
                admin.set_limits("alpha", rate="5 per second".replace(" ", ""))


def test_admin_settings_survive_a_restart_on_sqlite() -> None:
    gauge = Gauge()
    srv = GearshiftServer(store="sqlite")
    with srv:
        with AdminClient(srv.address) as admin:
            admin.pause("held")
            admin.set_limits("capped", concurrency=1, rate="10/m")
        with Client([srv.address], timeout=10) as client:
            client.submit_background("held", b"kept")
        srv.restart()
        with AdminClient(srv.address) as admin:
            records = {x.function: x for x in admin.limits()}
            assert records["held"].paused
            assert (records["capped"].concurrency, records["capped"].rate) == (1, "10/m")
            with workers(srv.address, 1, {"held": gauge.handler(0.0)}):
                wait_until(lambda: _registered(admin, "held", 1), timeout=10)
                time.sleep(0.5)
                assert gauge.done == 0  # the replayed job waits: still paused
                admin.resume("held")
                wait_until(lambda: gauge.done == 1, timeout=10)
        srv.restart()
        with AdminClient(srv.address) as admin:
            assert [x.function for x in admin.limits()] == ["capped"]


@pytest.mark.parametrize(("option", "value"), [
    ("--concurrency", "slow=x"), ("--concurrency", "slow"), ("--rate", "tick=5"),
    ("--rate", "tick=5/d"), ("--weight", "w=0"),
])
def test_malformed_specs_fail_at_startup_naming_the_text(option: str, value: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gearshift", "serve", "--store", "memory",
                           "--port", "0", option, value], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 2
    assert value in proc.stderr


def test_drain_refuses_submissions_and_finishes_queued_jobs() -> None:
    from gearshift.client import ServerError

    gauge = Gauge()
    with GearshiftServer() as srv, AdminClient(srv.address) as admin, \
            Client([srv.address], timeout=10) as client:
        for i in range(3):
            client.submit_background("f", b"%d" % i)
        done = subprocess.run([sys.executable, "-m", "gearshift", "admin", "-h",
                               srv.address, "--drain"], capture_output=True, text=True,
                              timeout=30, check=False)
        assert (done.returncode, done.stdout) == (0, "OK\n")
        assert admin.draining()
        with pytest.raises(ServerError, match="draining"):
            client.submit_background("f", b"late")
        with pytest.raises(ServerError, match="draining"):
            client.submit("f", b"late")
        with workers(srv.address, 1, {"f": gauge.handler(0.0)}):
            wait_until(lambda: gauge.done == 3, timeout=10)
        admin.drain(False)
        assert client.submit_background("f", b"accepted again")


@pytest.mark.skipif(shutil.which("gearman") is None, reason="apt-get install gearman-tools")
def test_a_libgearman_worker_sees_only_standard_packets_across_a_pause(tmp_path: Path) -> None:
    # libgearman's `gearman -w` knows nothing of flow control: while its function is
    # paused it is told NO_JOB and sleeps; resume wakes it with a NOOP and it runs all.
    out = tmp_path / "ran"
    with GearshiftServer(extra_args=["--concurrency", "held=0"]) as srv, \
            AdminClient(srv.address) as admin:
        host, port = srv.address.rsplit(":", 1)
        with Client([srv.address], timeout=10) as client:
            for i in range(3):
                client.submit_background("held", b"job%d\n" % i)
        worker = subprocess.Popen(["gearman", "-h", host, "-p", port, "-w", "-f", "held",
                                   "-c", "3", "--", "sh", "-c", f"cat >> {out}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _registered(admin, "held", 1), timeout=10)
            time.sleep(0.5)
            assert not out.exists()  # paused by a limit of 0: nothing ran
            admin.resume("held")
            assert worker.wait(15) == 0  # -c 3: it ran three jobs and exited
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert sorted(out.read_text().split()) == ["job0", "job1", "job2"]


def test_admin_maxqueue_survives_a_restart_on_sqlite() -> None:
    srv = GearshiftServer(store="sqlite")
    with srv:
        with AdminClient(srv.address) as admin:
            admin.command("maxqueue capped 1")
        srv.restart()
        with Client([srv.address], timeout=10) as client:
            client.submit_background("capped", b"first")
            with pytest.raises(ServerError) as info:
                client.submit_background("capped", b"second")
        assert info.value.code == b"QUEUE_ERROR"
        with AdminClient(srv.address) as admin:
            assert [x.admin for x in admin.limits() if x.function == "capped"] == \
                ["maxqueue=1,1,1"]
