"""Messages a new user meets first (issue 19): a worker pointed at a dead server says so,
a submit timeout after the server accepted the job says no result came (not that the
server did not answer), and ``admin --json`` says null for a missing client id."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

from gearshift.testing import GearshiftServer, ServerProcess, free_port

from .conftest import gearshift, without_extras


def _hp(host: str, port: int) -> list[str]:
    return ["-h", host, "-p", str(port)]


def _read_until(proc: subprocess.Popen[bytes], text: bytes, timeout: float) -> bytes:
    """proc's stderr until ``text`` appears (or the timeout): what it said so far."""
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while text not in seen and time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                chunk = proc.stderr.read()
                if not chunk:
                    break
                seen += chunk
    return seen


def test_work_against_a_dead_server_warns_then_says_when_connected() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gearshift", "work",
                             *_hp("127.0.0.1", port), "-f", "friction", "--", "cat"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        said = _read_until(proc, b"\n", 15)
        assert f"cannot reach 127.0.0.1:{port}".encode() in said, said
        assert said.count(b"cannot reach") == 1  # once per outage, not per attempt
        with GearshiftServer(port=port):
            said = _read_until(proc, b"connected", 15)
            assert f"worker connected to 127.0.0.1:{port}".encode() in said, said
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stderr:
            proc.stderr.close()


def test_submit_timeout_after_the_job_was_accepted_says_so(server: ServerProcess) -> None:
    result = gearshift(["submit", *_hp(server.host, server.port), "-f", "friction_nobody",
                        "-t", "1000"], stdin=b"x")
    said = result.stderr.decode()
    assert result.returncode == 1
    assert "gearshift submit: the server accepted 1 job(s) (H:" in said
    assert "no result came within 1000 ms" in said
    assert "'friction_nobody'" in said
    assert "timed out waiting for the server" not in said


def test_submit_timeout_with_a_silent_server_still_blames_the_server() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        result = gearshift(["submit", *_hp("127.0.0.1", silent.getsockname()[1]), "-f", "f",
                            "-t", "500"], stdin=b"x")
    assert result.returncode == 1
    assert b"timed out waiting for the server" in result.stderr


def test_admin_json_client_id_is_null_when_none_was_set(server: ServerProcess) -> None:
    with socket.create_connection((server.host, server.port)) as anonymous, \
            socket.create_connection((server.host, server.port)) as named:
        named.sendall(b"\0REQ\x00\x00\x00\x16\x00\x00\x00\x05named")  # SET_CLIENT_ID
        named.sendall(b"\0REQ\x00\x00\x00\x10\x00\x00\x00\x03fri")  # ECHO_REQ: a round trip
        assert named.recv(64).endswith(b"fri")
        anonymous.sendall(b"\0REQ\x00\x00\x00\x10\x00\x00\x00\x01x")
        assert anonymous.recv(64).endswith(b"x")
        result = gearshift(["admin", *_hp(server.host, server.port), "--workers", "--json"])
        text = gearshift(["admin", *_hp(server.host, server.port), "--workers"])
    workers = json.loads(result.stdout)["workers"]
    ids = [w["client_id"] for w in workers]
    assert "named" in ids
    assert None in ids
    assert "-" not in ids
    # the table keeps gearadmin's "-" (people read it; scripts use --json)
    assert any(line.split()[2] == "-" for line in text.stdout.decode().splitlines()[1:])


def test_startup_error_is_printed_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = gearshift(["serve", "-L", "127.0.0.1", "-p", str(taken.getsockname()[1]),
                            "--store", "memory", "--data-dir", str(tmp_path)])
    assert result.returncode == 1
    assert result.stderr.count(b"address already in use") == 1, result.stderr
    # with the log elsewhere, stderr still gets the reason (once)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        logged = gearshift(["serve", "-L", "127.0.0.1", "-p", str(taken.getsockname()[1]),
                            "--store", "memory", "-l", str(tmp_path / "log")])
    assert logged.stderr.count(b"address already in use") == 1, logged.stderr
    assert b"address already in use" in (tmp_path / "log").read_bytes()


def test_missing_store_driver_names_the_extra(tmp_path: Path) -> None:
    result = gearshift(["serve", "-L", "127.0.0.1", "-p", str(free_port()), "--store",
                        "postgresql://u@127.0.0.1/x", "--data-dir", str(tmp_path)],
                       env=without_extras(dict(os.environ)))
    assert result.returncode == 1
    assert b"the postgresql:// store needs asyncpg (pip install 'gearshift[postgres]')" in \
        result.stderr
    assert b"Traceback" not in result.stderr


def test_drop_function_refusal_says_what_is_left() -> None:
    # gearshift only: gearmand drops the function and its queued jobs with it.
    with GearshiftServer() as server:
        hp = _hp(server.host, server.port)
        queued = gearshift(["submit", *hp, "-b", "-f", "friction_drop", "x"])
        assert queued.returncode == 0, queued.stderr
        result = gearshift(["admin", *hp, "--drop-function", "friction_drop"])
        unknown = gearshift(["admin", *hp, "--drop-function", "friction_never"])
    assert result.returncode == 1
    said = result.stderr.decode()
    assert said.startswith("Error: there are still connected workers"), said
    assert "(friction_drop: 1 job(s) queued or running, 0 worker(s); it can be dropped " \
        "once both are 0)" in said
    assert unknown.returncode == 1
    assert b"queued or running" not in unknown.stderr  # the server's text says it all
