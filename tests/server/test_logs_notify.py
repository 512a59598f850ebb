"""Logs people can use and systemd readiness, on real ``gearshift serve`` processes: the
startup banner shows by default, ``--log-format json`` writes one object per line, and
``NOTIFY_SOCKET`` (a real unix datagram socket here) gets READY=1 once the port listens and
STOPPING=1 at shutdown. Also the shipped unit file and example config."""

from __future__ import annotations

import configparser
import io
import json
import logging
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift._version import __version__
from gearshift.server._logs import JsonFormatter
from gearshift.testing import GearshiftServer

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "gearshift.service"
EXAMPLE_CONFIG = ROOT / "packaging" / "gearshift.toml"


def test_banner_is_logged_at_the_default_level() -> None:
    with GearshiftServer() as server:
        log = server.read_log()
    banner = [line for line in log.splitlines() if "gearshift.startup" in line]
    assert len(banner) == 1, log
    assert f"gearshift {__version__} (" in banner[0]
    assert f"listening on {server.address}; store memory; data dir {server.workdir}" in \
        banner[0]
    assert "('127.0.0.1'" not in log  # addresses as host:port, not tuples


def test_json_log_format_one_object_per_line() -> None:
    with GearshiftServer(extra_args=["--log-format", "json", "--verbose", "INFO"]) as server:
        server.stop()
        log = server.read_log()
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert records, log
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
        assert record["time"].endswith("Z")
    banner = next(r for r in records if r["logger"] == "gearshift.startup")
    assert banner["listen"] == [server.address]
    assert (banner["store"], banner["version"]) == ("memory", __version__)
    assert any(r["level"] == "WARNING" and "SIGTERM" in r["message"] for r in records)


def test_json_formatter_keeps_extra_fields_and_exceptions() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gearshift.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("job %s\nfailed", "H:x:1", extra={"handle": "H:x:1", "attempt": 2})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("oops")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "job H:x:1\nfailed"
    assert (first["handle"], first["attempt"], first["level"]) == ("H:x:1", 2, "WARNING")
    assert "ValueError: boom" in second["exception"]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(15)
    try:
        yield sock, path
    finally:
        sock.close()


def _fields(datagram: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in datagram.decode().splitlines())


def test_systemd_readiness_on_a_real_notify_socket(
        notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    server = GearshiftServer(env={"NOTIFY_SOCKET": path})
    with server:
        ready = _fields(sock.recv(4096))
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(server.pid)
        assert ready["STATUS"] == f"listening on {server.address}"
        server.stop()
        stopping = _fields(sock.recv(4096))
    assert stopping["STOPPING"] == "1"
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(4096)  # STOPPING=1 is sent once, not again at exit


def test_ready_is_sent_only_once_listening(tmp_path: Path,
                                           notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    proc = subprocess.Popen(
        [sys.executable, "-m", "gearshift", "serve", "--listen", "127.0.0.1", "--port", "0",
         "--store", "memory", "--data-dir", str(tmp_path)],
        env={**os.environ, "NOTIFY_SOCKET": path}, stderr=subprocess.PIPE)
    try:
        ready = _fields(sock.recv(4096))
        host, port = ready["STATUS"].removeprefix("listening on ").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"version\n")
            assert conn.recv(64).startswith(b"OK")  # connectable the moment READY=1 came
    finally:
        proc.terminate()
        proc.wait(15)
        assert proc.stderr is not None
        proc.stderr.close()


def test_abstract_notify_socket(tmp_path: Path) -> None:
    name = f"gearshift-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(15)
        with GearshiftServer(env={"NOTIFY_SOCKET": "@" + name}):
            assert _fields(sock.recv(4096))["READY"] == "1"


def test_a_startup_failure_sends_no_ready(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gearshift", "serve", "-L", "127.0.0.1", "-p", str(port),
             "--store", "memory"], env={**os.environ, "NOTIFY_SOCKET": path},
            capture_output=True, timeout=30)
    assert result.returncode == 1
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


# ------------------------------------------------------------------ packaging


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    return unit


def test_unit_file_is_hardened_and_uses_readiness() -> None:
    service = _unit()["Service"]
    assert (service["Type"], service["NotifyAccess"]) == ("notify", "main")
    assert service["User"] == "gearshift"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": ""}.items():
        assert service[key] == value, key
    env = dict(e.split("=", 1) for e in shlex.split(service["Environment"]))
    assert env["GEARSHIFT_DATA_DIR"] in service["ReadWritePaths"].split()


def test_unit_file_command_line_runs_with_the_example_config() -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/gearshift")
    argv = [str(EXAMPLE_CONFIG) if a == "/etc/gearshift/gearshift.toml" else a
            for a in argv[1:]]
    env = dict(e.split("=", 1) for e in shlex.split(service["Environment"]))
    result = subprocess.run([sys.executable, "-m", "gearshift", *argv, "--print-config"],
                            capture_output=True, timeout=30, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(result.stdout.decode())
    assert printed["listen"] == ["127.0.0.1", "::1"]
    assert f'data-dir = "{env["GEARSHIFT_DATA_DIR"]}"' in result.stdout.decode()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = UNIT.read_text().replace("/usr/local/bin/gearshift", sys.executable + " -m gearshift")
    (tmp_path / "gearshift.service").write_text(unit)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "gearshift.service")],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "gearshift.service" in line]
    assert not problems, result.stdout + result.stderr


def test_log_file_moved_away_is_reopened_without_sighup(tmp_path: Path) -> None:
    log = tmp_path / "gearshift.log"
    with GearshiftServer(extra_args=["-l", str(log), "--verbose", "WARNING"]) as server:
        assert "gearshift.startup" in log.read_text()
        log.rename(tmp_path / "gearshift.log.1")  # logrotate without postrotate
        server.stop()  # logs "SIGTERM received" at WARNING
    assert "SIGTERM received" in log.read_text()
    assert "SIGTERM" not in (tmp_path / "gearshift.log.1").read_text()
