"""gearmand's process options on real ``gearshift serve`` processes: Debian's unit's exact
command line with ``--daemon``, ``--user``, ``--config-file``, and the options that must
refuse to start. A daemon is not our child: each test ends it by the pid in its pid file
(SIGKILL in ``finally`` if SIGTERM did not)."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.testing import free_port

from ._wire import proc_alive


def _serve(*args: str, env: dict[str, str] | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearshift", "serve", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _version(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"version\n")
        return sock.recv(64)


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def _running(pid: int) -> bool:
    """Alive and not a zombie (a daemon is reaped by init, maybe late, in a container)."""
    if not proc_alive(pid):
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def _killed_at_end(pid_file: Path) -> Iterator[None]:
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def test_debian_unit_command_line_daemonizes_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    pid_file, log_file = tmp_path / "gearmand.pid", tmp_path / "gearmand.log"
    with _killed_at_end(pid_file):
        # The Debian unit's ExecStart, verbatim but for the paths and the port.
        started = _serve(f"--pid-file={pid_file}", "--listen=127.0.0.1", f"--port={port}",
                         "--daemon", f"--log-file={log_file}",
                         env={"GEARSHIFT_DATA_DIR": str(tmp_path / "data")})
        assert started.returncode == 0, started.stderr
        # Type=forking: by the time the command returned, the daemon listens.
        pid = int(pid_file.read_text())
        assert _running(pid)
        assert _version(port).startswith(b"OK")
        # A new session, whose leader (the middle fork) is gone: no terminal, ever.
        assert os.getsid(pid) not in (os.getsid(0), pid)
        assert log_file.exists()
        os.kill(pid, signal.SIGTERM)
        assert _wait_gone(pid, 15), "daemon ignored SIGTERM"
        assert not pid_file.exists()


def test_daemon_that_cannot_listen_makes_the_command_fail_with_the_reason(
        tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with _killed_at_end(pid_file):
            result = _serve("-d", "-L", "127.0.0.1", "-p", str(port), "--store", "memory",
                            "-P", str(pid_file), "-l", str(tmp_path / "log"))
    assert result.returncode == 1
    assert "address already in use" in result.stderr
    assert not pid_file.exists()


def test_unknown_user_fails_before_binding_naming_it(tmp_path: Path) -> None:
    port = free_port()
    result = _serve("-u", "no-such-user-gearshift", "-L", "127.0.0.1", "-p", str(port),
                    "--store", "memory", "-d")
    assert result.returncode == 1
    assert "no-such-user-gearshift" in result.stderr
    assert _refused(port)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_user_drops_privileges_after_binding(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    pid_file = tmp_path / "server.pid"
    with _killed_at_end(pid_file):
        # Port, log and pid file are opened as root, in a directory nobody cannot enter.
        result = _serve("-u", "nobody", "-d", "-L", "127.0.0.1", "-p", str(port),
                        "--store", "memory", "-P", str(pid_file), "-l",
                        str(tmp_path / "log"), "--verbose", "INFO")
        assert result.returncode == 0, result.stderr
        pid = int(pid_file.read_text())
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uids.split()[1:] == [str(nobody.pw_uid)] * 4
        assert _version(port).startswith(b"OK")
        os.kill(pid, signal.SIGTERM)
        assert _wait_gone(pid, 15)


def test_config_file_options_apply_and_the_command_line_wins(tmp_path: Path) -> None:
    file_port, cli_port = free_port(), free_port()
    pid_file = tmp_path / "server.pid"
    config = tmp_path / "gearmand.conf"
    config.write_text(f"# gearmand.conf\nport={file_port}\n--listen=127.0.0.1\n"
                      "store=memory\nfile-descriptors=1000\ncoredump\n"
                      "hashtable-buckets=991\nstore-queue-on-shutdown\n"
                      f"--pid-file {pid_file}   # trailing comment\ndaemon\n")
    with _killed_at_end(pid_file):
        result = _serve("--config-file", str(config), "--port", str(cli_port),
                        "-l", str(tmp_path / "log"))
        assert result.returncode == 0, result.stderr
        pid = int(pid_file.read_text())
        assert _version(cli_port).startswith(b"OK")
        assert _refused(file_port)
        limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
        assert next(x for x in limits if x.startswith("Max open files")).split()[3] == "1000"
        core = next(x for x in limits if x.startswith("Max core file size")).split()
        assert core[4] == core[5]  # soft raised to the hard limit (unlimited as root)
        os.kill(pid, signal.SIGTERM)
        assert _wait_gone(pid, 15)


@pytest.mark.parametrize(("content", "expected"), [
    ("port=4730\nno-such-option=1\n", ":2: unknown option '--no-such-option=1'"),
    ("# ok\n\nport=notanumber\n", ":3: argument -p/--port: invalid int value"),
    ("config-file=/etc/other.conf\n", ":1: --config-file is not allowed"),
])
def test_config_file_errors_name_file_and_line(tmp_path: Path, content: str,
                                               expected: str) -> None:
    config = tmp_path / "bad.conf"
    config.write_text(content)
    result = _serve("--config-file", str(config), "--store", "memory")
    assert result.returncode == 1
    assert f"{config}{expected}" in result.stderr


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    result = _serve("--config-file", str(tmp_path / "missing.conf"))
    assert result.returncode == 1
    assert f"--config-file {tmp_path / 'missing.conf'}: cannot read it" in result.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["-r", "smtp"], "unknown protocol module"),
])
def test_features_gearshift_lacks_refuse_to_start(args: list[str], expected: str) -> None:
    result = _serve(*args, "--store", "memory", "-p", str(free_port()), "-L", "127.0.0.1")
    assert result.returncode == 1
    assert expected in result.stderr
