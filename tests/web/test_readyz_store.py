"""``/readyz`` follows the store: a Redis store behind a loopback proxy the test cuts
(the shared Redis keeps running for everyone else, as in tests/durable)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from durable._proxy import Proxy
from durable._services import REDIS, address, drop, need_service, private_name, retarget, with_name
from gearshift import Client
from gearshift.client import GearmanError

from .conftest import HttpServer, call


def _wait(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.storage
@pytest.mark.timeout(90)
def test_readyz_is_503_while_store_writes_fail() -> None:
    need_service(REDIS)
    name = private_name()
    with Proxy(address(REDIS)) as proxy:
        try:
            url = with_name("redis", retarget(REDIS, proxy.port), name)
            with HttpServer(store=url) as proc, Client([proc.address], timeout=15) as client:
                client.submit_background("ready_check", b"stored")
                assert call(proc.http_port, "GET", "/readyz").status == 200
                proxy.cut()
                with pytest.raises(GearmanError):
                    client.submit_background("ready_check", b"not stored")
                down = call(proc.http_port, "GET", "/readyz")
                assert down.status == 503
                assert b"is failing writes" in down.body
                assert call(proc.http_port, "GET", "/healthz").status == 200
                proxy.restore()

                def stored_again() -> bool:
                    try:
                        client.submit_background("ready_check", b"after")
                    except GearmanError:
                        return False
                    return True

                assert _wait(stored_again)
                assert call(proc.http_port, "GET", "/readyz").status == 200
        finally:
            drop("redis", name)
