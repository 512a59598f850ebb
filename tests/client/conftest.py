"""Fixtures for the client/worker/admin tests: the same test bodies run against a real
gearshift server and a real gearmand (each started on a free loopback port).

Servers are shared per module to keep the run short; every test uses function names
derived from its own node id, so queues never mix between tests.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gearshift.client import Worker
from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, gearmand_path

SERVER_KINDS = ["gearshift", "gearmand"]


def start_server(kind: str, port: int | None = None) -> ServerProcess:
    if kind == "gearmand":
        if gearmand_path() is None:
            pytest.skip("gearmand is not installed (apt-get install gearman-job-server)")
        return GearmandServer(port=port, extra_args=["--threads", "0"]).start()
    return GearshiftServer(port=port).start()


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    proc = start_server(request.param)
    try:
        yield proc
    finally:
        proc.__exit__(None, None, None)


@pytest.fixture
def fname(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``fname("x")`` -> a function name unique to this test (and server)."""
    base = re.sub(r"[^A-Za-z0-9]+", "_", request.node.name)[-60:]
    return lambda suffix="": f"{base}_{suffix}" if suffix else base


@contextmanager
def running(worker: Worker, **kwargs: Any) -> Iterator[Worker]:
    """Run a blocking worker in a thread for the duration of the block; it must stop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(**kwargs)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), "worker did not stop"
    if errors:
        raise errors[0]
