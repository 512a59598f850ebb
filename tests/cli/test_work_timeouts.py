"""``gearshift work --timeout``: a job past its deadline is stopped -- its command's whole
process group is gone -- and fails with "timeout after S s"; the worker goes on taking
jobs (no JOB_NOT_FOUND loop from a server that requeued it behind our back)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from gearshift.client import AdminClient, Client, JobException
from gearshift.testing import ServerProcess, wait_until

from .conftest import spawn
from .test_work_supervisor import alive, finish, gearshift  # noqa: F401 (fixture)

# A command that, for the workload "slow", starts a background helper in its group and
# waits on it: both must go when the job is stopped. Any other workload answers at once.
SCRIPT = ('read x; if [ "$x" = slow ]; then echo $$ > {pids}; sleep 60 & echo $! >> {pids};'
          ' wait; fi; echo quick')


def start_worker(server: ServerProcess, function: str, script: str,
                 *extra: str) -> subprocess.Popen[bytes]:
    return spawn(["work", "-h", server.host, "-p", str(server.port), "-f", function,
                  "--timeout", "1", *extra, "--", "sh", "-c", script])


def test_timeout_stops_the_process_group_and_fails_the_job(gearshift: ServerProcess,  # noqa: F811
                                                           tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    proc = start_worker(gearshift, "to_group", SCRIPT.format(pids=pids))
    try:
        with Client([gearshift.address], timeout=30) as client:
            started = time.monotonic()
            with pytest.raises(JobException) as info:
                client.submit("to_group", b"slow\n")
            failed_after = time.monotonic() - started
            group = [int(p) for p in pids.read_text().split()]
            assert len(group) == 2
            gone = wait_until(lambda: not any(alive(p) for p in group), "group gone", 5)
            print(f"\n--timeout 1: job failed after {failed_after:.2f} s, "
                  f"process group gone {gone:.2f} s later")
            assert info.value.data == b"timeout after 1 s"
            assert client.submit("to_group", b"fast\n") == b"quick\n"  # next job: clean
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        assert b"stopped: timeout after 1 s" in err
        assert b"JOB_NOT_FOUND" not in err
    finally:
        finish(proc)


def test_command_ignoring_sigterm_is_killed_after_grace(gearshift: ServerProcess,  # noqa: F811
                                                        tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f'trap "" TERM; echo $$ > {pids}; sleep 60'
    proc = start_worker(gearshift, "to_stubborn", script, "--kill-grace", "0.5")
    try:
        with Client([gearshift.address], timeout=30) as client:
            started = time.monotonic()
            with pytest.raises(JobException) as info:
                client.submit("to_stubborn", b"")
            took = time.monotonic() - started
            print(f"\nSIGTERM ignored: job failed after {took:.2f} s (1 s + 0.5 s grace)")
            assert info.value.data == b"timeout after 1 s"
            assert took >= 1.5
            assert not alive(int(pids.read_text()))
    finally:
        finish(proc)


def test_cancel_job_kills_the_running_command(gearshift: ServerProcess,  # noqa: F811
                                              tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    proc = spawn(["work", "-h", gearshift.host, "-p", str(gearshift.port), "-f", "to_cancel",
                  "--", "sh", "-c", SCRIPT.format(pids=pids)])
    try:
        with Client([gearshift.address], timeout=30) as client, \
                AdminClient(gearshift.address, timeout=10) as admin:
            handle = client.submit_background("to_cancel", b"slow\n")
            wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2,
                       "the command running")
            group = [int(p) for p in pids.read_text().split()]
            admin.cancel_job(handle)
            gone = wait_until(lambda: not any(alive(p) for p in group), "group gone", 5)
            print(f"\ncancel job: the command's process group gone after {gone:.2f} s")
            outcome = client.result(handle)
            assert outcome.state == "cancelled"
            assert client.submit("to_cancel", b"fast\n") == b"quick\n"  # goes on cleanly
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        assert b"stopped: cancelled" in err
        assert b"ERROR" not in err
    finally:
        finish(proc)
