"""The HTTP listener as a process serves it: health, bad input answered with the right
status and no traceback, a slow HTTP client that does not hold up the Gearman port, and
the startup errors (missing extra, port in use)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from gearshift import Client
from gearshift.testing import free_port

from .conftest import HttpServer, call, working


def test_health_endpoints(server: HttpServer) -> None:
    health = call(server.http_port, "GET", "/healthz")
    assert (health.status, health.body) == (200, b"ok\n")
    ready = call(server.http_port, "GET", "/readyz")
    assert (ready.status, ready.body) == (200, b"ready\n")
    assert health.headers["server"].startswith("gearshift/")


def test_unknown_api_path_is_404_and_wrong_method_405(server: HttpServer) -> None:
    assert call(server.http_port, "GET", "/api/nothing-here").status == 404
    assert call(server.http_port, "POST", "/api/nothing-here", b"x").status == 404
    wrong = call(server.http_port, "DELETE", "/metrics")
    assert wrong.status == 405
    assert wrong.headers["allow"] == "GET,HEAD"
    assert call(server.http_port, "POST", "/healthz", b"").status == 405
    assert call(server.http_port, "PUT", "/api/functions", b"").status == 405


def test_body_over_max_packet_size_is_413(tmp_path: Path) -> None:
    with HttpServer(extra_args=("-r", "http", "--max-packet-size", "1024")) as proc:
        too_big = call(proc.http_port, "POST", "/anything", b"x" * 2048,
                       {"X-Gearman-Background": "true"})
        assert too_big.status == 413
        assert b"Traceback" not in too_big.body
        fits = call(proc.http_port, "POST", "/anything", b"x" * 512,
                    {"X-Gearman-Background": "true"})
        assert fits.status == 200


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
            if b"\r\n\r\n" in reply:
                break
        return reply


def test_malformed_requests_get_400_without_traceback(server: HttpServer) -> None:
    for request in (b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n",
                    b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"):
        reply = _raw(server.http_port, request)
        status_line = reply.split(b"\r\n")[0]
        assert status_line.startswith(b"HTTP/1."), reply
        assert b" 400 " in status_line, reply
        assert b"Traceback" not in reply
    assert call(server.http_port, "GET", "/healthz").status == 200


def test_a_stalled_http_client_does_not_hold_up_the_gearman_port(server: HttpServer,
                                                                  fname: object) -> None:
    # Headers half sent, then a body that never finishes: the listener waits on this
    # connection only.
    stalled = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(5)]
    try:
        stalled[0].sendall(b"POST /stall HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc")
        stalled[1].sendall(b"GET /metr")
        with working(server.address, {"stall_echo": lambda job: job.data.upper()}), \
                Client([server.address], timeout=10) as client:
            assert [client.submit("stall_echo", b"x%d" % i) for i in range(20)] == \
                [b"X%d" % i for i in range(20)]
        assert call(server.http_port, "GET", "/healthz").status == 200
    finally:
        for sock in stalled:
            sock.close()


def test_http_listen_binds_the_address_given() -> None:
    with HttpServer(extra_args=("--http-listen", "127.0.0.1")) as proc:
        assert call(proc.http_port, "GET", "/healthz").status == 200
        # Without -r http, no path submits a job.
        assert call(proc.http_port, "POST", "/somefunction", b"data").status == 404


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gearshift", "serve", "--store", "memory",
                           "-L", "127.0.0.1", "-p", str(free_port()), *args],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def test_missing_extra_fails_startup_naming_it(tmp_path: Path) -> None:
    # A module that fails to import stands in for an uninstalled aiohttp.
    (tmp_path / "aiohttp.py").write_text("raise ImportError('no aiohttp', name='aiohttp')\n")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    result = _serve("--http-port", str(free_port()), env={"PYTHONPATH": path})
    assert result.returncode == 1
    assert "pip install 'gearshift[http]'" in result.stderr
    assert "aiohttp" in result.stderr


def test_http_port_in_use_fails_startup() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve("--http-port", str(port))
    assert result.returncode == 1
    assert f"cannot listen for HTTP on ['127.0.0.1'] port {port}" in result.stderr


def test_bare_r_http_means_gearmands_port_8080() -> None:
    import argparse

    from gearshift.cli._serve import config_from_args, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    config = config_from_args(parser.parse_args(["serve", "-r", "http"]))
    assert (config.http_port, config.http_protocol) == (8080, True)
    config = config_from_args(parser.parse_args(["serve", "--http-port", "9000"]))
    assert (config.http_port, config.http_protocol) == (9000, False)
    assert config_from_args(parser.parse_args(["serve"])).http_port is None


def test_sigterm_while_an_http_request_waits_for_a_worker() -> None:
    """A foreground HTTP submission nobody can run does not hold up shutdown: SIGTERM
    ends the server (exit 0, not the SIGKILL that stop() falls back to) and the HTTP
    connection is closed."""
    proc = HttpServer().start()
    try:
        waiting = socket.create_connection(("127.0.0.1", proc.http_port), timeout=20)
        waiting.sendall(b"POST /nobody HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        assert call(proc.http_port, "GET", "/readyz").status == 200  # the request is in
        assert proc.stop(timeout=15) == 0
        assert waiting.recv(1000) == b""
        waiting.close()
    finally:
        proc.__exit__(None, None, None)


def test_http_submissions_count_against_max_connections() -> None:
    with HttpServer(extra_args=("-r", "http", "--max-connections", "1")) as proc, \
            socket.create_connection(("127.0.0.1", proc.port)) as gearman:
        gearman.sendall(b"version\n")
        assert gearman.recv(64).startswith(b"OK")  # the one connection allowed
        refused = call(proc.http_port, "POST", "/f", b"x", {"X-Gearman-Background": "true"})
        assert refused.status == 503
        assert refused.body == b"too many connections (--max-connections)\n"


def test_a_failing_handler_answers_500_without_a_traceback() -> None:
    """The application as the server builds it, served by aiohttp on a loopback port,
    with one more route whose handler raises: the answer is a bare 500."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from gearshift.http._app import HttpListener
    from gearshift.server._config import ServerConfig
    from gearshift.server._server import Server

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug with a secret in it")

    async def scenario() -> tuple[int, str]:
        app = HttpListener(Server(ServerConfig(store="memory", http_port=0))).application()
        app.router.add_get("/broken", broken)
        async with TestClient(TestServer(app)) as client:
            reply = await client.get("/broken")
            return reply.status, await reply.text()

    status, body = asyncio.run(scenario())
    assert status == 500
    assert body == "internal server error (see the server log)\n"
