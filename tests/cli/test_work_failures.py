"""``gearshift work``: a failing command's reason (exit status or signal, and the end of
its stderr) reaches clients through a gearshift server; its stderr still reaches ours."""

from __future__ import annotations

from typing import cast

import pytest

from gearshift.cli._work import STDERR_TAIL, CommandFailed, command_handler
from gearshift.client import Client, Job, JobException, JobFailed
from gearshift.testing import ServerProcess

from .conftest import spawn


def hp(server: ServerProcess) -> list[str]:
    return ["-h", server.host, "-p", str(server.port)]


def test_exit_status_and_stderr_become_the_reason(server: ServerProcess) -> None:
    proc = spawn(["work", *hp(server), "-f", "cli_stderr_fail", "-c", "1", "--",
                  "sh", "-c", "echo boom >&2; exit 3"])
    try:
        with Client([server.address], timeout=20) as client, \
                pytest.raises(JobFailed) as info:
            client.submit("cli_stderr_fail", b"x")
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if server.name == "gearshift":
        assert isinstance(info.value, JobException)
        assert b"status 3" in info.value.data
        assert info.value.data.endswith(b"sh exited with status 3: boom")
    else:  # gearmand: bare WORK_FAIL, the library's auto mode
        assert not isinstance(info.value, JobException)
    assert err.startswith(b"boom\n")  # passed through as it came, then the logged warning
    assert b"gearshift work: job " in err
    assert b"sh exited with status 3: boom" in err
    assert b"Traceback" not in err  # the reason says it all
    assert b": ERROR" not in err  # gearmand's answer to the probe is not worth a warning


class FakeJob:
    """What the command handler uses of a Job."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent: list[bytes] = []
        self.cancelled: str | None = None

    def send_data(self, data: bytes) -> None:
        self.sent.append(data)

    def on_cancel(self, callback: object) -> None:
        pass


def run_handler(command: list[str]) -> tuple[str, FakeJob]:
    job = FakeJob(b"input")
    with pytest.raises(CommandFailed) as info:
        command_handler(command)(cast(Job, job))
    return str(info.value), job


def test_signal_is_named() -> None:
    reason, _ = run_handler(["sh", "-c", "kill -KILL $$"])
    assert reason == "sh killed by signal SIGKILL"


def test_stderr_tail_is_bounded_and_output_still_sent() -> None:
    script = "cat; head -c 10000 /dev/zero | tr '\\0' x >&2; echo ' the end' >&2; exit 1"
    reason, job = run_handler(["sh", "-c", script])
    assert job.sent == [b"input"]  # stdout goes out as WORK_DATA first, as before
    assert reason.startswith("sh exited with status 1: xxx")
    assert reason.endswith("x the end")
    assert len(reason) <= len("sh exited with status 1: ") + STDERR_TAIL
