"""The databases behind the durable-store workloads, started on free loopback ports.

Each service is started once per benchmark run (starting PostgreSQL takes seconds) and
gives every server run a *fresh* place to store into -- a new SQLite file, a flushed
Redis, a new PostgreSQL or MariaDB database -- so no run replays another run's jobs.  Both
servers get the same service with the same settings, so the comparison is fair.

``fresh()`` returns the matching command-line options for gearmand (``-q ...``) and the
``--store`` URL for gearshift.  gearmand in Debian has no MySQL queue (``gearmand --help``
lists builtin, libmemcached, libsqlite3, Postgres and redis), so the MySQL row is
gearshift-only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gearshift.testing import free_port

#: How long a database may take to accept connections after it was started.
STARTUP_TIMEOUT_S = 60.0


class ServiceError(RuntimeError):
    """A database needed by a durable workload could not be started or reset."""


@dataclass(frozen=True)
class StoreArgs:
    """How to point each server at a fresh store.

    Attributes:
        gearmand: extra gearmand options, or None when gearmand has no such queue plugin.
        gearshift: the ``gearshift serve --store`` value.
    """

    gearmand: list[str] | None
    gearshift: str


class StoreService(Protocol):
    def start(self) -> None: ...
    def fresh(self) -> StoreArgs: ...
    def stop(self) -> None: ...


def _run(argv: list[str], what: str, timeout: float = STARTUP_TIMEOUT_S) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{what}: {exc}") from exc
    if proc.returncode != 0:
        raise ServiceError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


def _wait_until(ok: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise ServiceError(f"{what} did not become ready within {STARTUP_TIMEOUT_S:g} s")


class MemoryService:
    """No persistence: gearmand's builtin queue, gearshift ``--store memory``."""

    def start(self) -> None:
        pass

    def fresh(self) -> StoreArgs:
        return StoreArgs(gearmand=[], gearshift="memory")

    def stop(self) -> None:
        pass


class SqliteService:
    """A new SQLite file per run (gearmand ``-q libsqlite3``, gearshift ``sqlite:///``)."""

    def __init__(self) -> None:
        self.dir = ""
        self.count = 0

    def start(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-sqlite-")

    def fresh(self) -> StoreArgs:
        self.count += 1
        gm = os.path.join(self.dir, f"gearmand-{self.count}.sqlite")
        gs = os.path.join(self.dir, f"gearshift-{self.count}.sqlite")
        return StoreArgs(gearmand=["-q", "libsqlite3", "--libsqlite3-db", gm],
                         gearshift=f"sqlite:///{gs}")

    def stop(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisService:
    """One redis-server (no RDB/AOF of its own), flushed before every run."""

    def __init__(self) -> None:
        self.port = 0
        self.dir = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def _cli(self, *args: str) -> str:
        return _run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args],
                    f"redis-cli {' '.join(args)}", timeout=30)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not installed (apt-get install redis-server)")
        self.port, self.dir = free_port(), tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready() -> bool:
            try:
                return self._cli("PING").strip() == "PONG"
            except ServiceError:
                return False
        _wait_until(ready, "redis-server")

    def fresh(self) -> StoreArgs:
        self._cli("FLUSHALL")
        return StoreArgs(
            gearmand=["-q", "redis", "--redis-server", "127.0.0.1",
                      "--redis-port", str(self.port)],
            gearshift=f"redis://127.0.0.1:{self.port}/0")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresService:
    """A throw-away PostgreSQL cluster (initdb, trust auth); a new database per run.

    PostgreSQL refuses to run as root, so when the harness is root the cluster is run as
    the ``postgres`` system user (``runuser``).
    """

    def __init__(self) -> None:
        self.port = 0
        self.dir = ""
        self.count = 0

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def _psql(self, sql: str) -> str:
        return _run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                     "-d", "postgres", "-Atc", sql], f"psql {sql!r}", timeout=30)

    def start(self) -> None:
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            raise ServiceError("PostgreSQL server binaries (initdb, pg_ctl) not on PATH")
        self.port, self.dir = free_port(), tempfile.mkdtemp(prefix="bench-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        _run(self._as_owner(["initdb", "-D", data, "-U", "postgres", "--auth=trust",
                             "-E", "UTF8"]), "initdb")
        _run(self._as_owner([
            "pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "start", "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"]), "pg_ctl start")

    def fresh(self) -> StoreArgs:
        self.count += 1
        db = f"bench{self.count}"
        self._psql(f"CREATE DATABASE {db}")
        return StoreArgs(
            gearmand=["-q", "postgres", "--libpq-conninfo",
                      f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"],
            gearshift=f"postgresql://postgres@127.0.0.1:{self.port}/{db}")

    def stop(self) -> None:
        if self.dir:
            subprocess.run(self._as_owner(["pg_ctl", "-D", os.path.join(self.dir, "data"),
                                           "-m", "fast", "-w", "stop"]),
                           capture_output=True, check=False, timeout=60)
            shutil.rmtree(self.dir, ignore_errors=True)


class MysqlService:
    """A throw-away MariaDB/MySQL server (mariadb-install-db); a new database per run."""

    def __init__(self) -> None:
        self.port = 0
        self.dir = ""
        self.count = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _sql(self, sql: str) -> str:
        return _run(["mysql", "-h", "127.0.0.1", "-P", str(self.port), "-u", "root",
                     "-e", sql], f"mysql {sql!r}", timeout=30)

    def start(self) -> None:
        install, server = shutil.which("mariadb-install-db"), shutil.which("mysqld")
        if install is None or server is None:
            raise ServiceError("MariaDB server not installed (apt-get install mariadb-server)")
        self.port, self.dir = free_port(), tempfile.mkdtemp(prefix="bench-mysql-")
        data = os.path.join(self.dir, "data")
        _run([install, "--no-defaults", f"--datadir={data}", "--user=root",
              "--auth-root-authentication-method=normal", "--skip-test-db"],
             "mariadb-install-db")
        self.proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.dir}/mysqld.sock", "--user=root",
             "--skip-grant-tables", f"--pid-file={self.dir}/mysqld.pid",
             f"--log-error={self.dir}/error.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready() -> bool:
            try:
                self._sql("SELECT 1")
                return True
            except ServiceError:
                return False
        _wait_until(ready, "mysqld")

    def fresh(self) -> StoreArgs:
        self.count += 1
        db = f"bench{self.count}"
        self._sql(f"CREATE DATABASE {db}")
        return StoreArgs(gearmand=None, gearshift=f"mysql://root@127.0.0.1:{self.port}/{db}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class MemcachedService:
    """One memcached, emptied (``flush_all``) before every run."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def _command(self, line: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(line)
            return sock.recv(256)

    def start(self) -> None:
        binary = shutil.which("memcached")
        if binary is None:
            raise ServiceError("memcached not installed (apt-get install memcached)")
        self.port = free_port()
        user = ["-u", "memcache"] if os.geteuid() == 0 else []
        self.proc = subprocess.Popen(
            [binary, "-l", "127.0.0.1", "-p", str(self.port), "-m", "2048", *user],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready() -> bool:
            try:
                return self._command(b"version\r\n").startswith(b"VERSION")
            except OSError:
                return False
        _wait_until(ready, "memcached")

    def fresh(self) -> StoreArgs:
        try:
            reply = self._command(b"flush_all\r\n")
        except OSError as exc:
            raise ServiceError(f"memcached flush_all: {exc}") from exc
        if not reply.startswith(b"OK"):
            raise ServiceError(f"memcached flush_all answered {reply!r}")
        return StoreArgs(
            gearmand=["-q", "libmemcached", "--libmemcached-servers", f"127.0.0.1:{self.port}"],
            gearshift=f"memcached://127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def make_service(store: str) -> StoreService:
    """The service for a workload's ``store`` name.

    Raises:
        ValueError: unknown store name.
    """
    services: dict[str, type[StoreService]] = {
        "memory": MemoryService, "sqlite": SqliteService, "redis": RedisService,
        "postgres": PostgresService, "mysql": MysqlService, "memcached": MemcachedService,
    }
    try:
        return services[store]()
    except KeyError:
        raise ValueError(f"unknown store {store!r}; known: {', '.join(services)}") from None
