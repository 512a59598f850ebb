"""``gearshift result``, ``gearshift admin --dead/--retry-dead/--purge-dead`` and
``gearshift schedule`` as subprocesses against a real gearshift server with a retry
policy: exit statuses, what goes to stdout and what to stderr."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from gearshift.client import Client, Job, Worker
from gearshift.testing import GearshiftServer, ServerProcess

from .conftest import gearshift

FLAKY = "cli_flaky"


@pytest.fixture(scope="module")
def keeper() -> Iterator[ServerProcess]:
    with GearshiftServer(extra_args=["--retry", f"{FLAKY}=2:100ms"]) as proc:
        yield proc


def hp(server: ServerProcess) -> list[str]:
    return ["-h", server.address]


@contextmanager
def serving(server: ServerProcess, function: str,
            handler: Callable[[Job], bytes]) -> Iterator[None]:
    """A blocking worker for ``function`` in a thread, for the duration of the block."""
    worker = Worker([server.address])
    worker.register(function, handler)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        worker.stop()
        thread.join(10)


def submit(server: ServerProcess, function: str, data: bytes) -> str:
    with Client([server.address], timeout=10) as client:
        return client.submit_background(function, data).decode()


def test_result_complete_prints_the_data(keeper: ServerProcess) -> None:
    handle = submit(keeper, "cli_upper", b"hello\x00bytes")
    with serving(keeper, "cli_upper", lambda job: job.data.upper()):
        done = gearshift(["result", *hp(keeper), handle, "--wait", "10"])
    assert (done.returncode, done.stdout, done.stderr) == (0, b"HELLO\x00BYTES", b"")
    as_json = gearshift(["result", *hp(keeper), "--json", handle])
    assert as_json.returncode == 0
    record = json.loads(as_json.stdout)
    assert (record["state"], record["handle"], record["data_b64"]) == (
        "complete", handle, "SEVMTE8AQllURVM=")


def test_result_queued_exits_3_and_wait_returns_once_done(keeper: ServerProcess) -> None:
    handle = submit(keeper, "cli_later", b"x")
    queued = gearshift(["result", *hp(keeper), handle])
    assert queued.returncode == 3
    assert queued.stdout == b""
    assert b"queued" in queued.stderr
    assert gearshift(["result", *hp(keeper), handle, "--wait", "0.2"]).returncode == 3
    waiting = subprocess.Popen([sys.executable, "-m", "gearshift", "result", *hp(keeper),
                                handle, "--wait", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # started once the command is (very likely) polling; correct either way
        time.sleep(0.5)
        with serving(keeper, "cli_later", lambda job: b"finally"):
            out, err = waiting.communicate(timeout=20)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert (waiting.returncode, out) == (0, b"finally"), err


@pytest.mark.parametrize("handle", ["H:never:1", "two words", "x\ty", "%00"])
def test_unknown_or_garbage_handle_exits_2(keeper: ServerProcess, handle: str) -> None:
    done = gearshift(["result", *hp(keeper), handle])
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"Traceback" not in done.stderr
    assert done.stderr.startswith(b"gearshift result:")


def test_result_without_a_server_exits_4() -> None:
    done = gearshift(["result", "-h", "127.0.0.1:1", "H:x:1"])
    assert done.returncode == 4
    assert b"Traceback" not in done.stderr


def test_dead_letter_listed_retried_and_completed(keeper: ServerProcess) -> None:
    healthy = threading.Event()

    def flaky(job: Job) -> bytes:
        if not healthy.is_set():
            raise RuntimeError("printer on fire")
        return b"printed " + job.data

    handle = submit(keeper, FLAKY, b"page 1")
    doomed = submit(keeper, FLAKY, b"page 2")
    with serving(keeper, FLAKY, flaky):
        dead = gearshift(["result", *hp(keeper), handle, "--wait", "10"])
        assert dead.returncode == 1
        assert dead.stdout == b""
        assert b"dead" in dead.stderr
        assert b"RuntimeError: printer on fire" in dead.stderr
        assert gearshift(["result", *hp(keeper), doomed, "--wait", "10"]).returncode == 1

        listing = gearshift(["admin", *hp(keeper), "--dead"])
        assert listing.returncode == 0
        lines = listing.stdout.decode().splitlines()
        assert lines[0].split() == ["HANDLE", "FUNCTION", "ATTEMPTS", "ENDED", "REASON"]
        row = next(line for line in lines if line.startswith(handle + " "))
        assert row.split()[1:3] == [FLAKY, "2"]
        assert row.endswith("printer on fire")
        records = json.loads(gearshift(["admin", *hp(keeper), "--dead", "--json",
                                        "--function", FLAKY]).stdout)["dead"]
        assert {r["handle"] for r in records} == {handle, doomed}
        assert all(r["reasons"] == ["RuntimeError: printer on fire"] * 2 for r in records)

        healthy.set()
        retried = gearshift(["admin", *hp(keeper), "--retry-dead", handle])
        assert (retried.returncode, retried.stdout) == (0, b"1\n")
        done = gearshift(["result", *hp(keeper), handle, "--wait", "10"])
        assert (done.returncode, done.stdout) == (0, b"printed page 1")

    purged = gearshift(["admin", *hp(keeper), "--purge-dead", "--function", FLAKY])
    assert (purged.returncode, purged.stdout) == (0, b"1\n")
    assert gearshift(["result", *hp(keeper), doomed]).returncode == 2
    unknown = gearshift(["admin", *hp(keeper), "--retry-dead", "H:never:1"])
    assert unknown.returncode == 1
    assert unknown.stderr.startswith(b"Error: UNKNOWN_JOB")
    for bad in (["--retry-dead"], ["--purge-dead", "H:x:1", "--all"]):
        wrong = gearshift(["admin", *hp(keeper), *bad])
        assert wrong.returncode == 2
        assert b"exactly one" in wrong.stderr
    assert gearshift(["admin", *hp(keeper), "--retry-dead", "--all"]).stdout == b"0\n"


def test_schedule_add_list_rm(keeper: ServerProcess) -> None:
    slot = (dt.datetime.now() + dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    cron = f"{slot.minute} {slot.hour} * * *"
    added = gearshift(["schedule", "add", *hp(keeper), "cli_report", cron, "weekly",
                       "--unique", "report-1", "--priority", "low"])
    assert added.returncode == 0, added.stderr
    key = added.stdout.decode().strip()
    listed = json.loads(gearshift(["schedule", "list", *hp(keeper), "--json"]).stdout)
    assert {"key": key, "function": "cli_report", "unique": "report-1", "cron": cron,
            "data_b64": "d2Vla2x5", "priority": "low", "next": slot.timestamp(),
            "last_fired": None} in listed
    table = gearshift(["schedule", "list", *hp(keeper)])
    assert table.stdout.decode().splitlines()[0].split()[:4] == ["KEY", "FUNCTION", "CRON",
                                                                "NEXT"]
    assert any(line.startswith(key + " ") and slot.strftime("%Y-%m-%d %H:%M:00") in line
               for line in table.stdout.decode().splitlines())
    assert gearshift(["schedule", "rm", *hp(keeper), key]).returncode == 0
    assert key not in gearshift(["schedule", "list", *hp(keeper)]).stdout.decode()
    again = gearshift(["schedule", "rm", *hp(keeper), key])
    assert again.returncode == 1
    assert b"UNKNOWN_SCHEDULE" in again.stderr


def test_schedule_bad_cron_shows_the_server_message(keeper: ServerProcess) -> None:
    bad = gearshift(["schedule", "add", *hp(keeper), "cli_report", "0 25 * * *"])
    assert bad.returncode == 1
    assert b"INVALID_ARGUMENTS" in bad.stderr
    assert b"Bad hour" in bad.stderr
    short = gearshift(["schedule", "add", *hp(keeper), "cli_report", "0 1 * *"])
    assert short.returncode == 2
    assert b"5 fields" in short.stderr
    assert b"Traceback" not in bad.stderr + short.stderr
