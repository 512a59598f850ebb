"""The shared database services the durable tests store into, and private names in them.

PostgreSQL, MariaDB and Redis run on loopback on this machine (and in CI, from
``.ci/run``); tests never stop them. Each test gets its own table or key prefix and
removes it afterwards, so runs can overlap. An unreachable service skips locally and
FAILS under ``CI=true``: CI must not pass by silently testing nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from gearshift.testing import free_port

PG = os.environ.get("GEARSHIFT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL = os.environ.get("GEARSHIFT_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REDIS = os.environ.get("GEARSHIFT_TEST_REDIS", "redis://127.0.0.1:6379/0")

#: scheme -> service URL without options.
SERVICES = {"postgresql": PG, "mysql": MYSQL, "redis": REDIS}


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"service URL {url!r} needs a host and a port")
    return parts.hostname, parts.port


def retarget(url: str, port: int) -> str:
    """``url`` pointing at 127.0.0.1:``port`` (same user, database and options)."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def need_service(url: str) -> None:
    """Skip (locally) or fail (CI=true) when the service behind ``url`` is not running."""
    host, port = address(url)
    if reachable(host, port):
        return
    message = f"{urlsplit(url).scheme} is not reachable at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: storage services are required)")
    pytest.skip(message)


def private_name() -> str:
    """A table name / key prefix no other test or run uses."""
    return "dur" + uuid.uuid4().hex[:12]


def with_name(scheme: str, base: str, name: str) -> str:
    """``base`` with the backend's isolation option (``?table=`` or ``?prefix=``)."""
    option = "prefix" if scheme in ("redis", "memcached") else "table"
    suffix = ":" if scheme in ("redis", "memcached") else ""
    return f"{base}?{option}={name}{suffix}"


def stored_count(scheme: str, url: str, name: str) -> int:
    """How many jobs the store behind ``url`` holds right now (read independently).

    memcached cannot list keys, so its layout is read with the store's own loader (a
    second reader on the same prefix, outside the server).
    """
    if scheme == "memcached":
        return asyncio.run(_loaded_count(url))
    if scheme == "sqlite":
        db = sqlite3.connect(urlsplit(url).path)
        try:
            table = name or "gearshift_jobs"
            count: int = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            return count
        finally:
            db.close()
    return asyncio.run(_stored_count(scheme, name))


async def _loaded_count(url: str) -> int:
    from gearshift.store import open_store

    store = open_store(url, data_dir="/nonexistent")
    await store.open()
    try:
        return len(await store.load())
    finally:
        await store.close()


async def _stored_count(scheme: str, name: str) -> int:
    if scheme == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(PG)
        try:
            value: int = await conn.fetchval(f"SELECT count(*) FROM {name}")
            return value
        finally:
            await conn.close()
    if scheme == "mysql":
        import aiomysql

        host, port = address(MYSQL)
        mconn = await aiomysql.connect(host=host, port=port, user="root", db="test")
        try:
            async with mconn.cursor() as cur:
                await cur.execute(f"SELECT count(*) FROM {name}")
                row = await cur.fetchone()
                return int(row[0])
        finally:
            mconn.close()
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS)
    try:
        return int(await client.zcard(f"{name}:order"))
    finally:
        await client.aclose()


def drop(scheme: str, name: str) -> None:
    """Remove a test's private table(s) or keys."""
    asyncio.run(_drop(scheme, name))


#: Every table a SQL store creates for ``?table=NAME`` (see the stores' schemas).
TABLE_SUFFIXES = ("", "_meta", "_outcomes", "_schedules", "_leases")


async def _drop(scheme: str, name: str) -> None:
    tables = ", ".join(name + suffix for suffix in TABLE_SUFFIXES)
    if scheme == "postgresql":
        import asyncpg

        conn = await asyncpg.connect(PG)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {tables}")
        finally:
            await conn.close()
    elif scheme == "mysql":
        import aiomysql

        host, port = address(MYSQL)
        mconn = await aiomysql.connect(host=host, port=port, user="root", db="test")
        try:
            async with mconn.cursor() as cur:
                await cur.execute("SET SESSION sql_notes = 0")
                await cur.execute(f"DROP TABLE IF EXISTS {tables}")
        finally:
            mconn.close()
    elif scheme == "redis":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(REDIS)
        try:
            keys = [k async for k in client.scan_iter(match=name + ":*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


class Memcached:
    """A private memcached child process on a free loopback port, stopped by pid."""

    def __init__(self) -> None:
        self.binary = shutil.which("memcached") or "/usr/bin/memcached"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"memcached://127.0.0.1:{self.port}"

    def start(self) -> None:
        if not os.path.exists(self.binary):
            message = "memcached is not installed (apt-get install memcached)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        user = ["-u", "root"] if os.geteuid() == 0 else []
        # -M: refuse rather than evict (eviction would drop queued jobs); -U 0: no UDP.
        self.proc = subprocess.Popen(
            [self.binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-M",
             "-m", "256", *user], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("memcached did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
