"""Bounds that keep a server exposed to hostile or runaway clients serving everyone
else: ``--max-queue`` from the first job on, ``--max-connections``, and one log line a
second (not one per attempt) when accept() runs out of file descriptors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from gearshift.protocol import ErrorCode
from gearshift.testing import GearshiftServer

from ._wire import P, Wire

MAX_CONNECTIONS = 5


def _eof_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _wait_until(predicate: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_max_queue_applies_from_the_first_job() -> None:
    with GearshiftServer(extra_args=["--max-queue", "capped.*=1"]) as srv:
        client = Wire.to(srv.address)
        assert client.call(P.SUBMIT_JOB_BG, b"capped.one", b"", b"1")[0] == P.JOB_CREATED
        ptype, fields = client.call(P.SUBMIT_JOB_BG, b"capped.one", b"", b"2")
        assert (ptype, fields[0]) == (P.ERROR, ErrorCode.QUEUE_ERROR)
        for data in (b"1", b"2"):  # other names are not capped
            assert client.call(P.SUBMIT_JOB_BG, b"free", b"", data)[0] == P.JOB_CREATED
        client.close()


@pytest.mark.parametrize(("option", "value"), [("--max-queue", "f=x"),
                                               ("--max-queue", "f=1,2"),
                                               ("--max-connections", "-1")])
def test_malformed_limits_fail_at_startup_naming_the_text(option: str, value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gearshift", "serve", "--store", "memory",
                           option, value], capture_output=True, timeout=30)
    assert done.returncode == 2
    assert repr(value).encode() in done.stderr


@pytest.fixture
def small_server() -> Iterator[GearshiftServer]:
    with GearshiftServer(extra_args=["--max-connections", str(MAX_CONNECTIONS),
                                     "--verbose", "WARNING"]) as srv:
        yield srv


def test_connections_past_the_limit_are_closed_and_the_rest_served(
        small_server: GearshiftServer) -> None:
    srv = small_server
    admin = Wire.to(srv.address)
    assert _wait_until(lambda: admin.admin(b"workers").count(b"\n") == 2)  # admin + "."
    baseline = _open_fds(srv.pid)
    for _ in range(3):
        kept = [Wire.to(srv.address) for _ in range(MAX_CONNECTIONS - 1)]
        for wire in kept:  # accepted: each one answers
            assert wire.call(P.ECHO_REQ, b"in") == (P.ECHO_RES, [b"in"])
        extra = [socket.create_connection((srv.host, srv.port)) for _ in range(5)]
        assert all(_eof_within(s, 5.0) for s in extra)
        assert admin.call(P.ECHO_REQ, b"still") == (P.ECHO_RES, [b"still"])
        for s in extra:
            s.close()
        for wire in kept:
            wire.close()
        assert _wait_until(lambda: _open_fds(srv.pid) == baseline), _open_fds(srv.pid)
        assert _wait_until(lambda: admin.admin(b"workers").count(b"\n") == 2)
    # The 15 refusals came within a second or two: logged at most once a second.
    warnings = srv.read_log().count("(--max-connections)")
    assert 1 <= warnings <= 4, srv.read_log()
    admin.close()


class _FewFdsServer(GearshiftServer):
    """``gearshift serve`` with RLIMIT_NOFILE lowered to ``FD_LIMIT`` before exec."""

    FD_LIMIT = 64

    def command(self) -> list[str]:
        shim = ("import os, resource, sys; "
                f"resource.setrlimit(resource.RLIMIT_NOFILE, ({self.FD_LIMIT}, {self.FD_LIMIT})); "
                "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
        cmd = super().command()
        return [cmd[0], "-c", shim, *cmd[1:]]


def test_running_out_of_descriptors_logs_once_a_second_not_per_accept() -> None:
    with _FewFdsServer(extra_args=["--loop", "asyncio", "--verbose", "WARNING",
                                   "--max-connections", "0"]) as srv:
        survivor = Wire.to(srv.address)
        flood = [socket.create_connection((srv.host, srv.port))
                 for _ in range(_FewFdsServer.FD_LIMIT + 20)]
        time.sleep(2.0)
        log = srv.read_log()
        for s in flood:
            s.close()
        assert survivor.call(P.ECHO_REQ, b"ok") == (P.ECHO_RES, [b"ok"])
        assert "Traceback" not in log, log[-2000:]
        lines = log.count("cannot accept connections")
        assert 1 <= lines <= 4, log[-2000:]  # ~2 s of EMFILE: 1 line a second
        survivor.close()
