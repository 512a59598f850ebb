"""The store goes away (or hangs) under a running server, and comes back.

The shared PostgreSQL and Redis keep running: the server's store URL points at a
loopback proxy (``_proxy.Proxy``) that the test cuts, stalls and restores.
Expectations (issue 4): submitters get ``ERROR QUEUE_ERROR`` with a message naming the
store; nothing is half-stored; foreground jobs keep flowing while a write hangs or
fails; the server stays up and reconnects with backoff; startup with an unreachable
store exits non-zero with a one-line message on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from gearshift.protocol import encode_request
from gearshift.testing import GearshiftServer, free_port

from ._link import Link, P, admin
from ._proxy import Proxy
from ._services import (
    SERVICES,
    address,
    drop,
    need_service,
    private_name,
    retarget,
    with_name,
)
from .conftest import Target

LABEL = {"postgresql": "PostgreSQL", "redis": "Redis", "mysql": "MySQL"}
FG_ROUNDS = 20
FG_MAX_S = 1.0          # one foreground round trip; generous for a loaded 2-core machine
RECOVER_S = 20.0        # backoff tops out at 2 s; reconnect must happen well within this


@pytest.fixture(params=["postgresql", "redis"])
def proxied(request: pytest.FixtureRequest) -> Iterator[tuple[Target, Proxy]]:
    scheme: str = request.param
    base = SERVICES[scheme]
    need_service(base)
    name = private_name()
    with Proxy(address(base)) as proxy:
        try:
            yield Target(scheme, with_name(scheme, retarget(base, proxy.port), name), name), proxy
        finally:
            drop(scheme, name)


class EchoWorker:
    """A worker for ``fg`` on its own thread that answers every job with its data."""

    def __init__(self, server: GearshiftServer) -> None:
        self.link = Link(server.host, server.port)
        self.link.send(P.CAN_DO, b"fg")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                got = self.link.grab()
                if got is None:
                    time.sleep(0.005)
                    continue
                self.link.send(P.WORK_COMPLETE, got[0], got[3])
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.link.close()


def foreground_round_trips(client: Link, tag: bytes) -> float:
    """Run FG_ROUNDS foreground jobs one after another; the slowest round trip in s."""
    slowest = 0.0
    for n in range(FG_ROUNDS):
        data = b"%s-%d" % (tag, n)
        start = time.monotonic()
        handle = client.submit(P.SUBMIT_JOB, b"fg", b"", data)
        assert client.read() == (P.WORK_COMPLETE, [handle, data])
        slowest = max(slowest, time.monotonic() - start)
    return slowest


def expect_queue_error(link: Link, target: Target, proxy: Proxy) -> str:
    kind, fields = link.read()
    assert kind == P.ERROR, f"expected ERROR QUEUE_ERROR, got {P(kind).name} {fields!r}"
    assert fields[0] == b"QUEUE_ERROR"
    message = fields[1].decode()
    # Clear: names the backend and the address that failed.
    assert LABEL[target.scheme] in message, message
    assert f"127.0.0.1:{proxy.port}" in message, message
    return message


@pytest.mark.storage
@pytest.mark.timeout(90)
def test_store_down_and_back(proxied: tuple[Target, Proxy]) -> None:
    target, proxy = proxied
    with GearshiftServer(store=target.url) as server:
        worker = EchoWorker(server)
        client = Link(server.host, server.port)
        bystander = Link(server.host, server.port)
        try:
            client.submit(P.SUBMIT_JOB_BG, b"bg", b"before", b"1")

            # A slow database: the write hangs; its submitter waits, nobody else does.
            proxy.stall()
            client.send(P.SUBMIT_JOB_BG, b"bg", b"stalled", b"2")
            slowest = foreground_round_trips(bystander, b"stall")
            assert slowest < FG_MAX_S, f"foreground job took {slowest:.2f}s during a stall"
            client.sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                client.read()   # no JOB_CREATED before the write has committed
            client.sock.settimeout(30)
            proxy.restore()
            kind, fields = client.read()
            assert kind == P.JOB_CREATED, f"{P(kind).name} {fields!r}"

            # The database goes away: QUEUE_ERROR, nothing half-stored, server up.
            proxy.cut()
            # Pipelined with an ECHO: the error still comes first (request order).
            client.send_raw(encode_request(P.SUBMIT_JOB_BG, b"bg", b"refused-1", b"3")
                            + encode_request(P.ECHO_REQ, b"after-refused-1"))
            print("\nQUEUE_ERROR message:", expect_queue_error(client, target, proxy))
            assert client.read() == (P.ECHO_RES, [b"after-refused-1"])
            # The next write waits out the backoff: foreground work meanwhile is unaffected.
            client.send(P.SUBMIT_JOB_BG, b"bg", b"refused-2", b"4")
            slowest = foreground_round_trips(bystander, b"down")
            assert slowest < FG_MAX_S, f"foreground job took {slowest:.2f}s, store down"
            expect_queue_error(client, target, proxy)
            for unique in (b"refused-1", b"refused-2"):
                kind, fields = client.request(P.GET_STATUS_UNIQUE, unique)
                assert (kind, fields[1]) == (P.STATUS_RES_UNIQUE, b"0"), \
                    f"failed submission {unique!r} is still known: {fields!r}"
            assert server.proc is not None
            assert server.proc.poll() is None
            assert admin(server.host, server.port, "version")[0].startswith("OK")
            assert target.count(server) == 2          # before + stalled, read directly

            # Back: reconnect with backoff, background submissions succeed again.
            proxy.restore()
            deadline = time.monotonic() + RECOVER_S
            errors = 0
            while True:
                kind, fields = client.request(P.SUBMIT_JOB_BG, b"bg", b"after", b"5")
                if kind == P.JOB_CREATED:
                    break
                assert (kind, fields[0]) == (P.ERROR, b"QUEUE_ERROR"), f"{fields!r}"
                errors += 1
                assert time.monotonic() < deadline, "store never came back"
                time.sleep(0.1)
            print(f"recovered after {errors} more QUEUE_ERRORs")
            assert target.count(server) == 3

            with Link(server.host, server.port) as runner:
                runner.send(P.CAN_DO, b"bg")
                ran = []
                while (got := runner.grab()) is not None:
                    ran.append(got[2])
                    runner.send(P.WORK_COMPLETE, got[0], b"")
            assert ran == [b"before", b"stalled", b"after"]
        finally:
            client.close()
            bystander.close()
            worker.close()


def serve(store: str, data_dir: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gearshift", "serve", "--listen", "127.0.0.1",
         "--port", str(free_port()), "--store", store, "--data-dir", data_dir],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.storage
@pytest.mark.timeout(90)
@pytest.mark.parametrize("scheme", ["postgresql", "redis", "mysql"])
@pytest.mark.parametrize("failure", ["refused", "reset"])
def test_startup_with_unreachable_store_exits_clearly(scheme: str, failure: str,
                                                      tmp_path: object) -> None:
    """Nothing listening (connection refused), or a listener that drops every connection."""
    with Proxy(address(SERVICES[scheme])) as proxy:
        if failure == "reset":
            proxy.cut()
            port = proxy.port
        else:
            port = free_port()
        url = retarget(SERVICES[scheme], port)
        started = time.monotonic()
        result = serve(url, str(tmp_path))
    elapsed = time.monotonic() - started
    print(f"\n{scheme}/{failure}: exit {result.returncode} after {elapsed:.1f}s: "
          f"{result.stderr.strip()}")
    assert result.returncode != 0
    assert "cannot open store" in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert LABEL[scheme] in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.timeout(60)
def test_startup_with_unusable_sqlite_path_exits_clearly(tmp_path: object) -> None:
    missing = os.path.join(str(tmp_path), "no-such-dir", "queue.db")
    result = serve(f"sqlite://{missing}", str(tmp_path))
    assert result.returncode != 0
    assert "cannot open store" in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
