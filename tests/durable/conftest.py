"""Fixtures: a durable store URL per backend, with a private table/prefix cleaned up after."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gearshift.testing import GearshiftServer

from ._services import (
    SERVICES,
    Memcached,
    drop,
    need_service,
    private_name,
    stored_count,
    with_name,
)


@dataclass(frozen=True)
class Target:
    """A store under test: ``url`` for ``--store``; ``name`` is its private table/prefix."""

    scheme: str
    url: str
    name: str

    def count(self, server: GearshiftServer) -> int:
        """Jobs in the store now, read behind the server's back (sqlite3/asyncpg/...)."""
        if self.scheme == "sqlite":
            path = os.path.join(server.workdir, "data", "queue.db")
            return stored_count("sqlite", "sqlite://" + path, "")
        return stored_count(self.scheme, self.url, self.name)


def make_target(scheme: str, base: str = "") -> Iterator[Target]:
    if scheme == "sqlite":
        # The bare "sqlite" URL is the default store: <data-dir>/queue.db.
        yield Target("sqlite", "sqlite", "")
        return
    name = private_name()
    if scheme == "memcached":
        # A private memcached: nothing to drop, it goes with the session.
        yield Target(scheme, with_name(scheme, base, name), name)
        return
    base = SERVICES[scheme]
    need_service(base)
    try:
        yield Target(scheme, with_name(scheme, base, name), name)
    finally:
        drop(scheme, name)


@pytest.fixture
def sqlite_target() -> Iterator[Target]:
    yield from make_target("sqlite")


@pytest.fixture
def pg_target() -> Iterator[Target]:
    yield from make_target("postgresql")


@pytest.fixture(params=["sqlite", "postgresql"])
def crash_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    yield from make_target(request.param)


@pytest.fixture(scope="session")
def memcached() -> Iterator[Memcached]:
    server = Memcached()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "redis", "memcached"])
def any_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    base = request.getfixturevalue("memcached").url if request.param == "memcached" else ""
    yield from make_target(request.param, base)
