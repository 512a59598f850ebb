"""Fixtures for the HTTP listener tests: a real ``gearshift serve --http-port`` process
(and a real gearmand ``-r http`` for the differential), workers in threads, and a small
HTTP client on the standard library (so what is tested is the bytes on the wire, not
another HTTP library's reading of them).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from client.conftest import running
from gearshift.client import Worker
from gearshift.testing import GearshiftServer, free_port, wait_until

pytest.importorskip("aiohttp", reason="the HTTP listener needs the 'http' extra")
pytest.importorskip("prometheus_client", reason="the HTTP listener needs the 'http' extra")
pytest.importorskip("httptools", reason="the HTTP listener needs the 'http' extra")


class HttpServer(GearshiftServer):
    """``gearshift serve`` with its HTTP listener on ``http_port``."""

    def __init__(self, extra_args: tuple[str, ...] = ("-r", "http"), **kwargs: Any) -> None:
        self.http_port = free_port()
        super().__init__(extra_args=["--http-port", str(self.http_port), *extra_args],
                         **kwargs)

    def start(self) -> HttpServer:
        """Ready when the HTTP port accepts too: it opens after the Gearman port, so a
        loaded machine could answer ``version`` before it listens."""
        super().start()
        wait_until(lambda: _accepts(self.http_port), "the HTTP listener", 20)
        return self


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None, timeout: float = 15.0) -> Reply:
    """One request on a fresh connection; header names lower-cased in the reply."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, resp.reason,
                     {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server() -> Iterator[HttpServer]:
    with HttpServer() as proc:
        yield proc


@pytest.fixture
def fname(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``fname("x")`` -> a function name unique to this test."""
    base = re.sub(r"[^A-Za-z0-9]+", "_", request.node.name)[-50:]
    return lambda suffix="": f"{base}_{suffix}" if suffix else base


@contextmanager
def working(address: str, handlers: dict[str, Callable[[Any], Any]]) -> Iterator[Worker]:
    """A blocking gearshift worker for ``handlers`` in a thread, for the block."""
    worker = Worker([address])
    for name, handler in handlers.items():
        worker.register(name, handler)
    with running(worker):
        yield worker
