"""libgearman's ``gearadmin`` tool parses the server's text admin replies.

gearadmin reads until the socket is quiet and prints ``OK x`` as ``x``, ``ERR x`` as
``Error: x`` on stderr (exit status 0 either way) and lists verbatim, so these tests
check what an operator would see, against gearmand and gearshift.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from gearshift.testing import ServerProcess

from ._peers import cli_client, function_status, wait_until, worker


def gearadmin(server: ServerProcess, *options: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["gearadmin", "-h", server.host, "-p", str(server.port), *options],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc
    return proc


def lines(out: str) -> list[str]:
    """A list reply without its terminating ``.``."""
    rows = out.splitlines()
    assert rows, out
    assert rows[-1] == ".", out
    return rows[:-1]


def test_server_version(server: ServerProcess) -> None:
    out = gearadmin(server, "--server-version").stdout.strip()
    assert out[:1].isdigit(), out


def test_getpid(server: ServerProcess) -> None:
    assert gearadmin(server, "--getpid").stdout.strip() == str(server.pid)


def test_status_workers_and_jobs_while_running(server: ServerProcess, func: str,
                                               tmp_path: Path) -> None:
    """--status, --workers, --show-jobs and --priority-status with a job running."""
    release = tmp_path / "release"
    handle = cli_client(server, "bg", func, "normal", str(release))["handle"]
    assert handle
    with worker("gear", server, func, "hold", tmp_path) as w:
        w.wait_for_jobs(1)
        status = lines(gearadmin(server, "--status").stdout)
        workers = lines(gearadmin(server, "--workers").stdout)
        jobs = lines(gearadmin(server, "--show-jobs").stdout)
        prio = lines(gearadmin(server, "--priority-status").stdout)
        release.touch()
    assert f"{func}\t1\t1\t1" in status
    # "FD IP CLIENT-ID : FUNCTION..." -- the gear worker names itself interop-gear.
    assert any(row.endswith(f" interop-gear : {func}") for row in workers), workers
    # "HANDLE RETRIES IGNORE_JOB JOB_QUEUED": never retried, not ignored, queued flag set.
    assert f"{handle}\t0\t0\t1" in jobs, jobs
    # "FUNCTION HIGH NORMAL LOW WORKERS": the running job is not queued any more.
    assert f"{func}\t0\t0\t0\t1" in prio, prio


def test_create_and_drop_function(server: ServerProcess, func: str) -> None:
    assert gearadmin(server, f"--create-function={func}").stdout == "OK\n"
    assert function_status(server, func) == (0, 0, 0)
    assert gearadmin(server, f"--drop-function={func}").stdout == "OK\n"
    assert function_status(server, func) is None
    missing = gearadmin(server, f"--drop-function={func}")
    assert missing.stdout == ""
    assert missing.stderr.startswith("Error: "), missing


def test_cancel_job(server: ServerProcess, func: str, tmp_path: Path) -> None:
    """A cancelled queued background job never runs; the next one does."""
    handle = cli_client(server, "bg", func, "normal", "cancelled")["handle"]
    assert gearadmin(server, f"--cancel-job={handle}").stdout == "OK\n"
    assert cli_client(server, "bg", func, "normal", "sentinel")["handle"]
    with worker("cli", server, func, "echo", tmp_path) as w:
        assert w.wait_for_jobs(1) == ["sentinel"]
        wait_until(lambda: function_status(server, func) == (0, 0, 1), "sentinel to finish")
    assert w.jobs() == ["sentinel"]
    unknown = gearadmin(server, "--cancel-job=H:nowhere:1")
    assert unknown.stdout == ""
    assert unknown.stderr.startswith("Error: "), unknown
