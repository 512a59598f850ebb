"""Process-level server fixtures shared by tests, interop suites and benchmarks."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

#: Server processes started by this process and not stopped yet: killed when it exits, so
#: a test that forgot to stop its server (or failed before it could) leaves no server
#: running after the test run (orphans bound to loopback ports were found after CI runs).
_RUNNING: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_RUNNING):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _RUNNING.clear()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def gearmand_path() -> str | None:
    """Where the reference gearmand binary is, or None when it is not installed."""
    return shutil.which("gearmand") or (
        "/usr/sbin/gearmand" if os.path.exists("/usr/sbin/gearmand") else None
    )


def _connect(host: str, port: int, timeout: float,
             tls: ssl.SSLContext | None = None) -> socket.socket:
    """A connection to the server, TLS when ``tls`` is given (the handshake done)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def _answers_version(host: str, port: int, tls: ssl.SSLContext | None = None) -> bool:
    """The server answers ``version`` -- or refuses it by ``--acl``, which is an answer."""
    try:
        with _connect(host, port, 0.5, tls) as sock:
            sock.sendall(b"version\n")
            sock.settimeout(0.5)
            return sock.recv(64).startswith((b"OK", b"ERR PERMISSION_DENIED"))
    except OSError:
        return False


def _connection_count(host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
    """Connections the admin ``workers`` command lists (this one included); -1 on error."""
    try:
        with _connect(host, port, 1.0, tls) as sock:
            sock.sendall(b"workers\n")
            reply = b""
            while not reply.endswith(b".\n") and len(reply) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return -1
                reply += chunk
                if reply.startswith(b"ERR") and reply.endswith(b"\n"):
                    return -1  # not allowed to list (--acl)
            # Leave no trace: wait for the server to close its side after our EOF, so this
            # probe is gone from its lists before the caller's next connection asks
            # (gearmand was seen still listing it: a flaky `workers` comparison). The
            # count is already known; a slow close only costs the wait.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(4096):
                    pass
            return reply.count(b"\n") - 1
    except OSError:
        return -1


class ServerProcess:
    """A server in a child process, bound to ``host:port``.

    Attributes:
        host, port: where it listens. ``address`` is ``"host:port"``.
        workdir: a private temporary directory (log file, pid file, data dir).
        tls: the client context the readiness probes use when the port speaks TLS
            (``--ssl``); None for a plaintext port.
    """

    tls: ssl.SSLContext | None = None

    name = "server"

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 extra_args: Sequence[str] = (), env: dict[str, str] | None = None,
                 startup_timeout: float = 15.0) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.extra_args = list(extra_args)
        self.env = env
        self.startup_timeout = startup_timeout
        self.workdir = tempfile.mkdtemp(prefix=f"{self.name}-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, "server.log")

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        """Start the process and wait until it answers ``version``."""
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                stdin=subprocess.DEVNULL,
            )
        _RUNNING.add(self.proc)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during startup:\n"
                    + self.read_log()
                )
            if _answers_version(self.host, self.port, self.tls):
                self._settle(deadline)
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.address}:\n" + self.read_log())

    def _settle(self, deadline: float) -> None:
        """Wait until the server lists no connection but the asking one (best effort).

        A readiness probe that timed out before a busy server answered is closed by us,
        but gearmand may keep listing it in ``workers`` for a while; a test that counts
        connections would then see a stranger. Bounded by the startup deadline; never
        fails the start.
        """
        until = min(deadline, time.monotonic() + 3.0)
        while time.monotonic() < until:
            if _connection_count(self.host, self.port, self.tls) <= 1:
                return
            time.sleep(0.05)

    def read_log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: a crash, for durability tests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            _RUNNING.discard(self.proc)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _RUNNING.discard(self.proc)
        return self.proc.returncode

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class GearshiftServer(ServerProcess):
    """``gearshift serve`` in a child process; in-memory store unless ``store`` is given."""

    name = "gearshift"

    def __init__(self, port: int | None = None, host: str = "127.0.0.1",
                 extra_args: Sequence[str] = (), store: str = "memory",
                 env: dict[str, str] | None = None, startup_timeout: float = 15.0) -> None:
        super().__init__(port, host, extra_args, env, startup_timeout)
        self.store = store

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "gearshift", "serve",
            "--listen", self.host, "--port", str(self.port),
            "--store", self.store,
            "--data-dir", os.path.join(self.workdir, "data"),
            "--pid-file", os.path.join(self.workdir, "server.pid"),
            *self.extra_args,
        ]


class GearmandServer(ServerProcess):
    """The reference C gearmand (Debian ``gearman-job-server``) in a child process."""

    name = "gearmand"

    def command(self) -> list[str]:
        binary = gearmand_path()
        if binary is None:
            raise RuntimeError("gearmand is not installed (apt-get install gearman-job-server)")
        return [
            binary, "--listen", self.host, "--port", str(self.port),
            "--log-file", os.path.join(self.workdir, "gearmand.log"),
            "--pid-file", os.path.join(self.workdir, "gearmand.pid"),
            *self.extra_args,
        ]
