"""``gearshift work --processes N``: the supervisor as operators drive it, by signals.

Each test starts a real server and a real ``gearshift work`` process tree and reads the
children from /proc (Linux), so "every child pid changes" is checked from outside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.client import Client, JobFailed
from gearshift.testing import GearshiftServer, ServerProcess, wait_until

from .conftest import spawn


@pytest.fixture(scope="module")
def gearshift() -> Iterator[ServerProcess]:
    with GearshiftServer() as proc:
        yield proc


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def work(server: ServerProcess, function: str, *command: str,
         extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    host, port = server.address.rsplit(":", 1)
    proc = spawn(["work", "-h", host, "-p", port, "-f", function, "--processes", "2",
                  *extra, "--", *command])
    wait_until(lambda: len(children(proc.pid)) == 2)
    return proc


def submit_in_background(client: Client, function: str) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(client.submit(function, b""))
        except JobFailed as exc:
            outcome.append(exc)
    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


def finish(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_sighup_reloads_every_child_after_its_job(gearshift: ServerProcess) -> None:
    proc = work(gearshift, "sup_reload", "sh", "-c", "sleep 2; echo $PPID")
    try:
        before = children(proc.pid)
        with Client([gearshift.address], timeout=30) as client:
            thread, outcome = submit_in_background(client, "sup_reload")
            time.sleep(0.5)  # the job's command is running in one child
            proc.send_signal(signal.SIGHUP)
            thread.join(30)
            assert len(outcome) == 1
            assert isinstance(outcome[0], bytes)
            assert int(outcome[0]) in before  # the old child finished and delivered it
            took = wait_until(lambda: len(children(proc.pid)) == 2
                              and not children(proc.pid) & before)
            print(f"\nSIGHUP: every child replaced {took:.2f} s after the job ended")
            assert int(client.submit("sup_reload", b"")) not in before
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert b"reloading" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        finish(proc)


def test_sigterm_drains_running_job(gearshift: ServerProcess) -> None:
    proc = work(gearshift, "sup_drain", "sh", "-c", "sleep 1; echo done")
    try:
        with Client([gearshift.address], timeout=30) as client:
            thread, outcome = submit_in_background(client, "sup_drain")
            time.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            thread.join(30)
        assert outcome == [b"done\n"]
        assert proc.wait(15) == 0
        log = proc.stderr.read()  # type: ignore[union-attr]
        assert b"1 jobs done, 0 failed" in log
        assert b"stopped" in log
    finally:
        finish(proc)


def test_second_sigterm_stops_now_and_kills_the_command(gearshift: ServerProcess,
                                                        tmp_path: Path) -> None:
    pidfile = tmp_path / "command.pid"
    proc = work(gearshift, "sup_now", "sh", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    try:
        with Client([gearshift.address], timeout=30) as client:
            client.submit_background("sup_now", b"")
            wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
            command = int(pidfile.read_text())
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert proc.poll() is None
            assert alive(command)
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert proc.wait(15) == 0
            print(f"\nsecond SIGTERM: stopped after {time.monotonic() - started:.2f} s")
        wait_until(lambda: not alive(command), timeout=5)
    finally:
        finish(proc)


def test_supervision_flags_are_checked(gearshift: ServerProcess) -> None:
    host, port = gearshift.address.rsplit(":", 1)
    for extra, message in [(["--processes", "0"], b"need 1 <= MIN <= MAX"),
                           (["--processes", "4:2"], b"need 1 <= MIN <= MAX"),
                           (["--processes", "x"], b"expected N or MIN:MAX"),
                           (["--max-jobs-per-child", "3"], b"need --processes"),
                           (["--status-file", "/tmp/x"], b"need --processes"),
                           (["--processes", "2", "--max-jobs-per-child", "0"],
                            b"positive count")]:
        proc = spawn(["work", "-h", host, "-p", port, "-f", "sup_flags", *extra])
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 2
        assert message in err


def test_reload_on_change_and_status_file(gearshift: ServerProcess, tmp_path: Path) -> None:
    watched = tmp_path / "job.sh"
    watched.write_text("sleep 3; echo v1\n")  # long enough to be seen in the status file
    status = tmp_path / "status.json"
    proc = work(gearshift, "sup_watch", "sh", str(watched),
                extra=("--reload-on-change", str(tmp_path), "--status-file", str(status)))
    try:
        with Client([gearshift.address], timeout=30) as client:
            thread, outcome = submit_in_background(client, "sup_watch")

            def busy_child() -> bool:
                try:
                    doc = json.loads(status.read_text())
                except (OSError, ValueError):
                    return False
                return any(c["job"] and c["job"]["function"] == "sup_watch"
                           for c in doc["children"])
            wait_until(busy_child, "the status file showing the running job")
            thread.join(30)
            assert outcome == [b"v1\n"]
            before = children(proc.pid)
            watched.write_text("echo v2\n")
            took = wait_until(lambda: len(children(proc.pid)) == 2
                              and not children(proc.pid) & before, "every child replaced")
            print(f"\n--reload-on-change: every child replaced {took:.2f} s after the edit")
            assert client.submit("sup_watch", b"") == b"v2\n"
        def listed() -> set[int]:
            return {c["pid"] for c in json.loads(status.read_text())["children"]}
        # written once a second: it catches up with the replaced children
        wait_until(lambda: listed() == children(proc.pid), "the status file up to date")
        assert json.loads(status.read_text())["supervisor"] == proc.pid
    finally:
        finish(proc)
