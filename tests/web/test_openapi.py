"""``/api/openapi.json`` stays true: the routes it describes are the routes registered
under ``/api/`` (paths and methods, both ways), it is a valid OpenAPI 3.1 document, and
a running server's answers match the schemas it gives."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gearshift.http._app import HttpListener
from gearshift.server._config import ServerConfig
from gearshift.server._server import Server

from .conftest import HttpServer, call

openapi_spec_validator = pytest.importorskip("openapi_spec_validator")
openapi_schema_validator = pytest.importorskip("openapi_schema_validator")


def _registered() -> dict[str, set[str]]:
    """Path -> methods of the application's routes under /api/ (HEAD, which aiohttp adds
    to every GET, left out)."""
    app = HttpListener(Server(ServerConfig(store="memory", http_port=0,
                                           http_protocol=True))).application()
    routes: dict[str, set[str]] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and route.method != "HEAD":
            routes.setdefault(path, set()).add(route.method.lower())
    return routes


def test_every_api_route_is_described_and_nothing_else(server: HttpServer) -> None:
    document = call(server.http_port, "GET", "/api/openapi.json").json()
    described = {path: set(operations) for path, operations in document["paths"].items()}
    assert described == _registered()
    assert len(described) >= 15


def test_the_document_is_valid_openapi(server: HttpServer) -> None:
    reply = call(server.http_port, "GET", "/api/openapi.json")
    assert reply.headers["content-type"].startswith("application/json")
    document = reply.json()
    assert document["openapi"].startswith("3.1")
    openapi_spec_validator.validate(document)  # raises on an invalid document


def _check(document: dict[str, Any], path: str, method: str, status: int,
           body: Any) -> None:
    """``body`` matches the schema the document gives for that answer."""
    response = document["paths"][path][method]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    openapi_schema_validator.validate(body, {**schema, "components": document["components"]},
                                      cls=openapi_schema_validator.OAS31Validator)


def test_real_answers_match_the_schemas(server: HttpServer, fname: Any) -> None:
    port = server.http_port
    document = call(port, "GET", "/api/openapi.json").json()
    name = fname("q")
    submitted = call(port, "POST", f"/{name}", b"payload", {"X-Gearman-Background": "true"})
    handle = submitted.headers["x-gearman-job-handle"]
    assert re.fullmatch(r"H:.+:\d+", handle)
    answers: list[tuple[str, str, str, bytes | None, int]] = [
        ("/api/functions", "get", "/api/functions", None, 200),
        ("/api/functions/{name}/jobs", "get", f"/api/functions/{name}/jobs", None, 200),
        ("/api/functions/{name}/jobs", "get", "/api/functions/nobody-here/jobs", None, 404),
        ("/api/functions/{name}/jobs", "get", f"/api/functions/{name}/jobs?limit=0", None,
         400),
        ("/api/workers", "get", "/api/workers", None, 200),
        ("/api/jobs/{handle}", "get", f"/api/jobs/{handle}", None, 200),
        ("/api/jobs/{handle}", "get", "/api/jobs/H:none:1", None, 404),
        ("/api/limits", "get", "/api/limits", None, 200),
        ("/api/dead", "get", "/api/dead", None, 200),
        ("/api/schedules", "get", "/api/schedules", None, 200),
        ("/api/cluster", "get", "/api/cluster", None, 200),
        ("/api/server", "get", "/api/server", None, 200),
        ("/api/functions/{name}/maxqueue", "post", f"/api/functions/{name}/maxqueue",
         b'{"max": {"high": 1, "normal": 2, "low": 3}}', 200),
        ("/api/functions/{name}/maxqueue", "post", f"/api/functions/{name}/maxqueue",
         b'{"max": -1}', 400),
        ("/api/functions/{name}/pause", "post", f"/api/functions/{name}/pause", b"", 200),
        ("/api/limits", "get", "/api/limits", None, 200),
        ("/api/functions/{name}/resume", "post", f"/api/functions/{name}/resume", b"", 200),
        ("/api/dead/retry", "post", "/api/dead/retry", b'{"all": true}', 200),
        ("/api/dead/purge", "post", "/api/dead/purge", b'{"handles": ["H:x:1"]}', 200),
        ("/api/dead/purge", "post", "/api/dead/purge", b'{"nothing": 1}', 400),
        ("/api/jobs/{handle}/cancel", "post", f"/api/jobs/{handle}/cancel", b"", 200),
        ("/api/jobs/{handle}/cancel", "post", f"/api/jobs/{handle}/cancel", b"", 404),
    ]
    seen_records = 0
    for path, method, url, body, status in answers:
        reply = call(port, method.upper(), url, body)
        assert reply.status == status, (url, reply.body)
        data = reply.json()
        _check(document, path, method, status, data)
        seen_records += bool(data) if isinstance(data, list) else 1
    # The lists checked were not all empty: the records themselves were validated.
    assert seen_records > 15
