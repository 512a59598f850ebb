"""Fixtures for the storage conformance suite: one real service per backend.

PostgreSQL, MariaDB and Redis are the machine's shared services on loopback; each test
gets its own table or key prefix and removes it afterwards. memcached is started here
as a child process on a free port and stopped by pid. A service that is not reachable
skips its tests locally and FAILS them when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from gearshift.store import Store, open_store
from gearshift.testing import free_port

PG = os.environ.get("GEARSHIFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL = os.environ.get("GEARSHIFT_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REDIS = os.environ.get("GEARSHIFT_TEST_REDIS", "redis://127.0.0.1:6379/0")

BACKENDS = ["memory", "sqlite", "postgresql", "mysql", "redis", "memcached"]
DURABLE = [b for b in BACKENDS if b != "memory"]


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (CI=true) when a shared service is not running."""
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: storage services are required)")
    pytest.skip(message)


class Memcached:
    """A private memcached child process; stop()/start() simulate the service going down."""

    def __init__(self) -> None:
        self.binary = shutil.which("memcached") or "/usr/bin/memcached"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not os.path.exists(self.binary):
            msg = "memcached is not installed (apt-get install memcached)"
            if os.environ.get("CI") == "true":
                pytest.fail(msg)
            pytest.skip(msg)
        user = ["-u", "root"] if os.geteuid() == 0 else []
        # -M: never evict (eviction would silently drop queued jobs); -U 0: no UDP.
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.port), "-U", "0", "-l", "127.0.0.1", "-M",
             "-m", "256", *user], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("memcached did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"memcached://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def memcached() -> Iterator[Memcached]:
    server = Memcached()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_memcached() -> Iterator[Memcached]:
    """A memcached of this test's own, which the test may stop and start."""
    server = Memcached()
    server.start()
    yield server
    server.stop()


@dataclass
class Backend:
    """One backend under test: its URL (with a private table/prefix) and a store factory."""

    name: str
    url: str
    down_url: str | None          # the same backend at an address where nothing listens
    data_dir: str
    _memory: Store | None = None

    def make(self) -> Store:
        """A new Store object on the same data (a server restart); memory keeps its one."""
        if self.name == "memory":
            if self._memory is None:
                self._memory = open_store("memory", data_dir=self.data_dir)
            return self._memory
        return open_store(self.url, data_dir=self.data_dir)


def _drop_sql(name: str, url: str, table: str) -> None:
    tables = ", ".join(f"{table}{suffix}" for suffix in ("", "_meta", "_outcomes", "_schedules",
                                                         "_flows", "_leases"))

    async def drop() -> None:
        if name == "postgresql":
            import asyncpg

            conn = await asyncpg.connect(PG)
            await conn.execute(f"DROP TABLE IF EXISTS {tables}")
            await conn.close()
        else:
            import aiomysql

            conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", db="test")
            async with conn.cursor() as cur:
                await cur.execute("SET SESSION sql_notes = 0")
                await cur.execute(f"DROP TABLE IF EXISTS {tables}")
            conn.close()

    asyncio.run(drop())


def _drop_redis(prefix: str) -> None:
    async def drop() -> None:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(REDIS)
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    asyncio.run(drop())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Backend]:
    yield from _backend(request, str(tmp_path), request.param)


@pytest.fixture(params=DURABLE)
def durable_backend(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Backend]:
    yield from _backend(request, str(tmp_path), request.param)


def _backend(request: pytest.FixtureRequest, tmp: str, name: str) -> Iterator[Backend]:
    tag = "t" + uuid.uuid4().hex[:12]
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    dead = free_port()
    if name == "memory":
        yield Backend(name, "memory", None, tmp)
        return
    if name == "sqlite":
        yield Backend(name, f"sqlite://{tmp}/queue.db?table={tag}",
                      f"sqlite://{tmp}/missing-dir/queue.db", tmp)
        return
    if name == "postgresql":
        need_service("PostgreSQL", "127.0.0.1", 5432)
        url = f"{PG}?table={tag}"
        down = f"postgresql://postgres@127.0.0.1:{dead}/test"
        cleanup = lambda: _drop_sql(name, url, tag)  # noqa: E731
    elif name == "mysql":
        need_service("MariaDB", "127.0.0.1", 3306)
        url = f"{MYSQL}?table={tag}"
        down = f"mysql://root@127.0.0.1:{dead}/test"
        cleanup = lambda: _drop_sql(name, url, tag)  # noqa: E731
    elif name == "redis":
        need_service("Redis", "127.0.0.1", 6379)
        url = f"{REDIS}?prefix={tag}:"
        down = f"redis://127.0.0.1:{dead}/0"
        cleanup = lambda: _drop_redis(tag + ":")  # noqa: E731
    else:
        mc: Memcached = request.getfixturevalue("memcached")
        url = f"{mc.url}?prefix={tag}:"
        down = f"memcached://127.0.0.1:{dead}"
    try:
        yield Backend(name, url, down, tmp)
    finally:
        cleanup()
