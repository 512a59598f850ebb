"""Fixtures for the interop suite: one real server per module and kind, fresh function names.

Every scenario runs twice, against the reference C gearmand and against gearshift, so a
failure says whether gearshift differs from gearmand or the third-party client is quirky
(a scenario that fails on gearmand too is an ``xfail(strict=True)`` with the reason).
Tests in a module share one server per kind; each test uses its own function names, so
they cannot see each other's jobs.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator

import pytest

from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, gearmand_path

SERVER_KINDS = ("gearmand", "gearshift")
_counter = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here drives third-party programs: mark it so it can be selected."""
    for item in items:
        if "tests/interop/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """A fresh server of the parametrised kind on a free loopback port."""
    kind: str = request.param
    if kind == "gearmand" and gearmand_path() is None:
        pytest.fail("gearmand is not installed: run scripts/install_interop.sh")
    srv: ServerProcess = GearmandServer() if kind == "gearmand" else GearshiftServer()
    with srv:
        yield srv


@pytest.fixture
def func(request: pytest.FixtureRequest) -> str:
    """A function name no other test uses (readable in admin output and server logs)."""
    base = request.node.originalname.removeprefix("test_")
    return f"{base}_{next(_counter)}"


def have(program: str) -> bool:
    return shutil.which(program) is not None
