"""gearmand's ``--libpq-conninfo`` reaches a real PostgreSQL with every key honoured: the
URL it becomes (cli/_gearmand_options.py) carries sslmode and a socket-directory host, and
the store (asyncpg) acts on them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import need_service

from gearshift.cli._gearmand_options import conninfo_to_url
from gearshift.store._base import StoreError
from gearshift.store._postgres import PostgresStore

pytest.importorskip("psycopg", reason="conninfo parsing needs psycopg (extra 'test')")

SOCKET_DIR = "/var/run/postgresql"
TABLE = f"gs_conninfo_{os.getpid()}"


async def _where(conninfo: str) -> tuple[str, bool, str]:
    """Connect as the server would: (server address or 'unix', session TLS, server ssl)."""
    url = conninfo_to_url(conninfo)
    store = PostgresStore(f"{url}{'&' if '?' in url else '?'}table={TABLE}")
    await store.open()
    try:
        async def probe(conn: object) -> tuple[str, bool, str]:
            row = await conn.fetchrow(  # type: ignore[attr-defined]
                "SELECT coalesce(host(inet_server_addr()), 'unix'), "
                "coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false), "
                "current_setting('ssl')")
            for suffix in ("", "_meta", "_outcomes", "_schedules"):
                await conn.execute(f"DROP TABLE IF EXISTS {TABLE}{suffix}")  # type: ignore[attr-defined]
            return row[0], row[1], row[2]

        return await store._call("probe", probe)
    finally:
        await store.close()


def test_tcp_conninfo_with_sslmode_disable_connects_without_tls() -> None:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    where = asyncio.run(_where("host=127.0.0.1 port=5432 user=postgres dbname=test "
                               "sslmode=disable connect_timeout=3"))
    assert where[:2] == ("127.0.0.1", False)


def test_sslmode_require_is_honoured() -> None:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    _, _, server_ssl = asyncio.run(_where("host=127.0.0.1 user=postgres dbname=test "
                                          "sslmode=disable"))
    conninfo = "host=127.0.0.1 user=postgres dbname=test sslmode=require"
    if server_ssl == "on":
        assert asyncio.run(_where(conninfo))[:2] == ("127.0.0.1", True)
    else:  # a server without TLS: 'require' must refuse, not fall back to plain text
        with pytest.raises(StoreError, match="SSL"):
            asyncio.run(_where(conninfo))


def test_socket_directory_host_connects_through_the_socket() -> None:
    if not Path(SOCKET_DIR, ".s.PGSQL.5432").exists():
        pytest.skip(f"PostgreSQL has no socket in {SOCKET_DIR}")
    where = asyncio.run(_where(f"host={SOCKET_DIR} user=postgres dbname=test"))
    assert where[:2] == ("unix", False)
