"""``gearshift submit``, ``work`` and ``admin`` as processes, against gearshift and gearmand,
including the stock ``gearman`` tool on the other end."""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gearshift.cli._admin import table
from gearshift.cli._terminal import Progress
from gearshift.client import AdminClient, Client, FunctionStatus, Job, JobFailed, Worker
from gearshift.testing import ServerProcess

from .conftest import gearshift, on_terminal, spawn


@contextmanager
def library_worker(server: ServerProcess, **functions: object) -> Iterator[Worker]:
    worker = Worker([server.address], exceptions=True)
    for name, fn in functions.items():
        worker.register(name, fn)  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(10)


def hp(server: ServerProcess) -> list[str]:
    return ["-h", server.host, "-p", str(server.port)]


def upper(job: Job) -> bytes:
    return job.data.upper()


def fail_on_bad(job: Job) -> bytes:
    if b"bad" in job.data:
        raise ValueError("bad input")
    return job.data


def test_submit_foreground_lines_prefix_and_failure(server: ServerProcess) -> None:
    with library_worker(server, cli_up=upper, cli_rev=lambda j: j.data[::-1],
                        cli_fail=fail_on_bad):
        one = gearshift(["submit", *hp(server), "-f", "cli_up"], stdin=b"hello")
        assert (one.returncode, one.stdout) == (0, b"HELLO")
        args = gearshift(["submit", *hp(server), "-f", "cli_up", "x", "y"])
        assert args.stdout == b"XY"
        many = gearshift(["submit", "-h", server.address, "-f", "cli_up", "-n", "-P"],
                         stdin=b"ab\ncd\n" * 50)
        assert many.returncode == 0
        assert sorted(many.stdout.decode().splitlines(keepends=True)) == sorted(
            ["cli_up: AB\n", "cli_up: CD\n"] * 50)
        assert many.stderr == b""  # piped: no progress bar
        both = gearshift(["submit", *hp(server), "-f", "cli_up", "-f", "cli_rev", "-P", "ab1"])
        assert both.returncode == 0
        assert b"cli_up: AB1" in both.stdout
        assert b"cli_rev: 1ba" in both.stdout
        failed = gearshift(["submit", *hp(server), "-f", "cli_fail", "-N"],
                           stdin=b"good\nbad\n")
        assert failed.returncode == 1
        assert failed.stdout == b"good"
        assert b"Job failed" in failed.stderr
        assert b"ValueError: bad input" in failed.stderr


def test_submit_background_verbose_and_env_servers(server: ServerProcess) -> None:
    bg = gearshift(["submit", "-f", "cli_bg", "-b", "-v", "-I", "payload"],
                   env={"GEARMAN_SERVERS": server.address})
    assert bg.returncode == 0, bg.stderr
    assert bg.stdout.startswith(b"Task created: H:")
    handle = bg.stdout.split(b": ", 1)[1].strip()
    with Client([server.address], timeout=10) as client:
        assert client.status(handle).known
    with AdminClient(server.address) as admin:
        prio = {p.function: p for p in admin.priority_status()}["cli_bg"]
        assert prio.high == 1
        admin.cancel_job(handle.decode())
    empty = gearshift(["submit", *hp(server), "-f", "cli_bg", "-b", "-s", "-u", "cli-key"])
    assert empty.returncode == 0
    with AdminClient(server.address) as admin:
        assert "cli-key" in admin.show_unique_jobs()
        for job in admin.show_jobs():
            admin.cancel_job(job.handle)


def test_submit_timeout_and_unreachable(server: ServerProcess) -> None:
    slow = gearshift(["submit", *hp(server), "-f", "cli_nobody", "-t", "300", "x"])
    assert slow.returncode == 1
    assert b"no result came within 300 ms" in slow.stderr  # accepted; no worker answered
    assert b"Job failed" not in slow.stderr
    down = gearshift(["submit", "-h", "127.0.0.1", "-p", "1", "-f", "f", "x"])
    assert down.returncode == 1
    assert b"no server accepted" in down.stderr


def test_work_runs_command_per_job(server: ServerProcess) -> None:
    proc = spawn(["work", *hp(server), "-f", "cli_tr", "-f", "cli_sh", "-c", "3", "--",
                  "sh", "-c", "tr a-z A-Z; test \"$(cat /dev/null)\" = ''"])
    try:
        with Client([server.address], timeout=20) as client:
            assert client.submit("cli_tr", b"shout") == b"SHOUT"
            assert client.submit("cli_sh", b"twice") == b"TWICE"
            assert client.submit("cli_tr", b"last") == b"LAST"
        assert proc.wait(15) == 0  # -c 3: exits by itself
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_work_failing_command_sends_output_then_fail(server: ServerProcess) -> None:
    proc = spawn(["work", *hp(server), "-f", "cli_exit", "-c", "1", "--",
                  "sh", "-c", "cat; exit 3"])
    try:
        with Client([server.address], timeout=20) as client:
            stream = client.stream("cli_exit", b"partial output")
            assert next(stream).data == b"partial output"
            with pytest.raises(JobFailed):
                next(stream)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_work_in_processes_stops_on_sigterm(server: ServerProcess) -> None:
    proc = spawn(["work", *hp(server), "-f", "cli_procs", "--processes", "2", "--",
                  "sh", "-c", "sleep 0.3; echo $PPID"])
    try:
        with Client([server.address], timeout=20) as client:
            tasks = client.task_set()
            for i in range(4):
                tasks.add("cli_procs", b"%d" % i)
            # each job's command reports its parent: the worker process that ran it
            runners = {int(result) for result in tasks.results()}
            assert len(runners) == 2
            assert proc.pid not in runners  # the supervisor only supervises
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_work_without_command_echoes_workload(server: ServerProcess) -> None:
    proc = spawn(["work", *hp(server), "-f", "cli_echo", "-c", "1"])
    try:
        with Client([server.address], timeout=20) as client:
            assert client.submit("cli_echo", b"to stdout") == b""
        out, _ = proc.communicate(timeout=15)
        assert out == b"to stdout"
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_admin_tables_json_and_errors(server: ServerProcess) -> None:
    with Client([server.address], timeout=10) as client:
        client.submit_background("cli_adm", b"", unique="adm-1")
    text = gearshift(["admin", *hp(server), "--status", "--getpid"])
    assert text.returncode == 0
    lines = text.stdout.decode().splitlines()
    assert lines[0] == str(server.pid)  # one-line values first, then tables
    assert lines[1].split() == ["FUNCTION", "TOTAL", "RUNNING", "WORKERS"]
    assert ["cli_adm", "1", "0", "0"] in [line.split() for line in lines]
    data = json.loads(gearshift(["admin", *hp(server), "--show-jobs", "--show-unique-jobs",
                                 "--server-version", "--json"]).stdout)
    assert "adm-1" in data["show_unique_jobs"]
    assert all(set(job) == {"handle", "retries", "ignored", "queued"}
               for job in data["show_jobs"])
    assert data["server_version"]
    err = gearshift(["admin", *hp(server), "--cancel-job", "H:none:1"])
    assert err.returncode == 1
    assert err.stderr.startswith(b"Error: UNKNOWN_JOB")
    assert gearshift(["admin", *hp(server)]).returncode == 1  # no command given
    # gearmand's free-text ERR lines (no code) read whole, not split at the first word.
    missing = gearshift(["admin", *hp(server), "--drop-function", "cli_never_created"])
    assert missing.returncode == 1
    assert missing.stderr == b"Error: function not found\n"
    with AdminClient(server.address) as admin:
        for job in admin.show_jobs():
            admin.cancel_job(job.handle)


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("gearman") is None, reason="apt-get install gearman-tools")
def test_stock_gearman_tool_on_the_other_side(server: ServerProcess) -> None:
    c_worker = subprocess.Popen(["gearman", "-w", *hp(server), "-f", "cli_c", "-c", "1",
                                 "--", "tr", "a-z", "A-Z"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    our_worker = spawn(["work", *hp(server), "-f", "cli_py", "-c", "1", "--", "rev"])
    try:
        ours = gearshift(["submit", *hp(server), "-f", "cli_c"], stdin=b"from gearshift")
        assert ours.stdout == b"FROM GEARSHIFT"
        stock = subprocess.run(["gearman", *hp(server), "-f", "cli_py"], input=b"abc",
                               capture_output=True, timeout=30)
        assert stock.stdout == b"cba"
        assert c_worker.wait(15) == 0
        assert our_worker.wait(15) == 0
    finally:
        for proc in (c_worker, our_worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class Terminal(io.StringIO):
    """A text stream that says it is a terminal, to see what a user would see."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    tty = Terminal()
    bar = Progress(4, tty, width=8)
    for _ in range(4):
        bar.advance()
        time.sleep(0.11)
    bar.close()
    drawn = tty.getvalue()
    rate = r"\d+\.\d/s ETA \d+:\d\d "
    assert re.match(rf"\r\[##......\] 1/4 {rate}\r\[####....\] 2/4 {rate}", drawn), drawn
    assert re.search(rf"\r\[########\] 4/4 {rate}\n$", drawn), drawn
    piped = io.StringIO()
    quiet = Progress(4, piped)
    quiet.advance(4)
    quiet.close()
    assert piped.getvalue() == ""


def test_table_alignment() -> None:
    rows = [FunctionStatus("resize", 12, 3, 1), FunctionStatus("mail", 7, 0, 10)]
    assert table(["FUNCTION", "TOTAL", "RUNNING", "WORKERS"], rows) == (
        "FUNCTION  TOTAL  RUNNING  WORKERS\n"
        "resize       12        3        1\n"
        "mail          7        0       10\n")
    assert table(["UNIQUE"], ["a", "bbb"]) == "UNIQUE\na\nbbb\n"


@pytest.mark.parametrize("without_rich", [False, True], ids=["rich", "plain"])
def test_progress_bar_drawn_on_a_real_terminal(server: ServerProcess,
                                               without_rich: bool) -> None:
    with library_worker(server, cli_pty=upper):
        status, out, drawn = on_terminal(["submit", *hp(server), "-f", "cli_pty", "-n"],
                                         stdin=b"x\n" * 300, tty="stderr",
                                         without_rich=without_rich)
    assert status == 0
    assert out == b"X\n" * 300  # results on stdout, untouched by the bar
    assert b"300/300" in drawn
    if without_rich:
        assert b"[" + b"#" * 30 + b"]" in drawn
        assert re.search(rb"300/300 \d+\.\d/s ETA 0:00", drawn)
    else:
        assert b"jobs/s" in drawn
        assert b"\xe2\x94\x81" in drawn  # rich's bar character
        assert b"#" * 30 not in drawn
