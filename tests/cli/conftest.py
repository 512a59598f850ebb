"""Fixtures for the CLI tests: real servers (gearshift and gearmand), real subprocesses."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence

import pytest

from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, gearmand_path


@pytest.fixture(scope="module", params=["gearshift", "gearmand"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    if request.param == "gearmand":
        if gearmand_path() is None:
            pytest.skip("gearmand is not installed (apt-get install gearman-job-server)")
        proc: ServerProcess = GearmandServer(extra_args=["--threads", "0"])
    else:
        proc = GearshiftServer()
    with proc:
        yield proc


def gearshift(args: Sequence[str], stdin: bytes = b"", timeout: float = 30,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m gearshift ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "gearshift", *args], input=stdin,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def spawn(args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``python -m gearshift ARGS`` in the background (the caller waits or kills)."""
    return subprocess.Popen([sys.executable, "-m", "gearshift", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


#: A directory whose ``rich`` and ``asyncpg`` fail to import: what a user without the
#: ``cli`` or ``postgres`` extra has (put first on PYTHONPATH).
MISSING_PACKAGES = os.path.join(os.path.dirname(__file__), "missing_packages")


def without_extras(env: dict[str, str]) -> dict[str, str]:
    """``env`` with MISSING_PACKAGES first on PYTHONPATH."""
    path = os.pathsep.join(filter(None, [MISSING_PACKAGES, env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path}


def on_terminal(args: Sequence[str], stdin: bytes = b"", tty: str = "stdout",
                without_rich: bool = False, timeout: float = 30,
                ) -> tuple[int, bytes, bytes]:
    """Run ``python -m gearshift ARGS`` with ``tty`` ("stdout" or "stderr") on a real
    pseudo-terminal, 100 columns wide; returns (status, the other stream, what the
    terminal got)."""
    master, slave = pty.openpty()
    os.set_blocking(master, True)
    env = {**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm"}
    if without_rich:
        env = without_extras(env)
    drawn: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, tty: slave}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "gearshift", *args],
                                stdin=subprocess.PIPE, env=env, **streams)
        os.close(slave)
        slave = -1
        out, err = proc.communicate(stdin, timeout=timeout)
        reader.join(10)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return proc.returncode, (err if tty == "stdout" else out), b"".join(drawn)
