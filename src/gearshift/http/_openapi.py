"""``GET /api/openapi.json``: an OpenAPI 3.1 description of the JSON API (_api.py).

Written by hand: the API is fifteen small routes whose records are built by the broker's
admin code (broker/_admin_outcomes.py, _admin_flow.py), not by typed models a library
could read. tests/web/test_openapi.py keeps it true: every route registered under
``/api/`` is described and nothing else is, the document is valid OpenAPI 3.1
(openapi-spec-validator), and real answers of a running server match its schemas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from gearshift._version import __version__

PATH: Final = "/api/openapi.json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _object(properties: dict[str, Any], required: list[str] | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties) if required is None else required, **extra}


_INT: Final = {"type": "integer"}
_NUM: Final = {"type": "number"}
_STR: Final = {"type": "string"}
_BOOL: Final = {"type": "boolean"}
_BASE64: Final = {"type": "string", "contentEncoding": "base64"}
_PRIORITIES: Final = _object({p: {"type": "integer", "minimum": 0}
                              for p in ("high", "normal", "low")})

SCHEMAS: Final[dict[str, Any]] = {
    "Error": _object({"error": _STR}),
    "Counts": _PRIORITIES,
    "Function": _object({
        "function": _STR, "queued": _ref("Counts"), "scheduled": _INT, "running": _INT,
        "workers": _INT, "max_queue": _ref("Counts"), "submitted": _INT,
        "completed": _INT, "failed": _INT, "retried": _INT, "dead": _INT,
        "paused": _BOOL, "held": _BOOL}),
    "Job": _object({
        "handle": _STR, "function": _STR, "unique": _STR,
        "state": {"enum": ["pending", "queued", "running", "scheduled", "complete",
                           "failed", "exception", "cancelled"],
                  "description": "live states, or how a kept outcome ended"},
        "dead": _BOOL, "attempts": _INT,
        "submitted": _nullable("number"), "started": _nullable("number"),
        "ended": _nullable("number"),
        "next_run": {**_NUM, "description": "scheduled jobs: when they run (epoch s)"},
        "reasons": {**_array(_STR), "description": "why earlier attempts failed"},
        "data_b64": {**_BASE64, "description": "a completed outcome's result"},
        "reason": {**_STR, "description": "a failed outcome's failure"},
        "payload_b64": {**_BASE64, "description": "dead letters: the workload"},
        "priority": {**_INT, "description": "dead letters: 0 high, 1 normal, 2 low"},
    }, required=["handle", "function", "unique", "state", "dead", "attempts",
                 "submitted", "started", "ended"]),
    "JobPage": _object({
        "function": _STR, "state": {"enum": ["queued", "running"]}, "offset": _INT,
        "jobs": _array(_ref("Job"))}),
    "Worker": _object({
        "id": _INT, "host": _STR, "port": _INT, "client_id": _STR,
        "functions": _array(_STR), "running": {**_array(_STR), "description": "handles"}}),
    "Limits": _object({
        "function": _STR, "concurrency": _nullable("integer"), "rate": _nullable("string"),
        "weight": _INT, "paused": _BOOL, "admin": _nullable("string"), "running": _INT,
        "queued": _INT, "held": _BOOL,
        "tokens": {**_NUM, "description": "rate-limited functions: tokens left"},
    }, required=["function", "concurrency", "rate", "weight", "paused", "admin",
                 "running", "queued", "held"]),
    "Schedule": _object({
        "key": _STR, "function": _STR, "unique": _STR, "cron": _STR, "data_b64": _BASE64,
        "priority": _INT, "next": _NUM, "last_fired": _nullable("number")}),
    "ClusterMember": _object({
        "server_id": _STR, "epoch": _INT, "expires_in": _NUM,
        "adopted_by": _nullable("string"), "self": _BOOL}),
    "Server": _object({
        "version": _STR, "build": _STR, "connections": _INT, "jobs": _INT, "store": _STR}),
    "MaxQueue": _object({"max": {"oneOf": [{"type": "integer", "minimum": 0},
                                           _ref("Counts")]}}),
    "DeadSelection": {"oneOf": [
        _object({"handles": _array(_STR)}, additionalProperties=False),
        _object({"function": _STR}, additionalProperties=False),
        _object({"all": {"const": True}}, additionalProperties=False)]},
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": schema}}}


_ERROR: Final = _json(_ref("Error"), "refused (see error)")
_FORBIDDEN: Final = _json(_ref("Error"), "the caller's address is not in --admin-from")


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema,
            "description": description}


_NAME: Final = _param("name", "path", _STR, "the function's name")
_HANDLE: Final = _param("handle", "path", _STR, "the job handle")
_PAGE: Final = [_param("offset", "query", {"type": "integer", "minimum": 0, "default": 0},
                       "records to skip"),
                _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000,
                                          "default": 100}, "records to return")]


def _get(summary: str, schema: dict[str, Any], parameters: Sequence[dict[str, Any]] = (),
         errors: tuple[str, ...] = ()) -> dict[str, Any]:
    responses = {"200": _json(schema), **{code: _ERROR for code in errors}}
    return {"get": {"summary": summary, "parameters": list(parameters),
                    "responses": responses}}


def _post(summary: str, schema: dict[str, Any], parameters: Sequence[dict[str, Any]] = (),
          body: dict[str, Any] | None = None, errors: tuple[str, ...] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary, "parameters": list(parameters),
        "responses": {"200": _json(schema), "403": _FORBIDDEN,
                      **{code: _ERROR for code in errors}}}
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": body}}}
    return {"post": operation}


PATHS: Final[dict[str, Any]] = {
    "/api/functions": _get("every function the server knows", _array(_ref("Function"))),
    "/api/functions/{name}/jobs": _get(
        "a page of a function's queued (most urgent, then oldest, first) or running jobs",
        _ref("JobPage"),
        [_NAME, _param("state", "query", {"enum": ["queued", "running"],
                                          "default": "queued"}, "which jobs"), *_PAGE],
        ("400", "404")),
    "/api/functions/{name}/maxqueue": _post(
        "as admin maxqueue (0 = unlimited)",
        _object({"function": _STR, "max_queue": _ref("Counts")}), [_NAME],
        _ref("MaxQueue"), ("400",)),
    "/api/functions/{name}/pause": _post(
        "as admin pause (persisted alike): the function's limits record",
        _ref("Limits"), [_NAME], errors=("400",)),
    "/api/functions/{name}/resume": _post(
        "as admin resume: the function's limits record", _ref("Limits"), [_NAME],
        errors=("400",)),
    "/api/limits": _get("flow settings and usage per function (admin limits)",
                        _array(_ref("Limits"))),
    "/api/workers": _get("connections that registered a function", _array(_ref("Worker"))),
    "/api/jobs/{handle}": _get("a live job, or its kept outcome", _ref("Job"), [_HANDLE],
                               ("404",)),
    "/api/jobs/{handle}/cancel": _post(
        "cancel a queued job (as admin cancel job)", _object({"cancelled": _STR}),
        [_HANDLE], errors=("404",)),
    "/api/dead": _get(
        "a page of dead letters, oldest first", _array(_ref("Job")),
        [_param("function", "query", _STR, "only this function's"), *_PAGE], ("400",)),
    "/api/dead/retry": _post("as admin retry dead: how many were queued again",
                             _object({"retry": _INT}), body=_ref("DeadSelection"),
                             errors=("400",)),
    "/api/dead/purge": _post("as admin purge dead: how many were dropped",
                             _object({"purge": _INT}), body=_ref("DeadSelection"),
                             errors=("400",)),
    "/api/schedules": _get("schedules (SUBMIT_JOB_SCHED, gearshift schedule)",
                           _array(_ref("Schedule"))),
    "/api/cluster": _get("the servers sharing the PostgreSQL store ([] otherwise)",
                         _array(_ref("ClusterMember"))),
    "/api/server": _get("version, build, connections, jobs, store", _ref("Server")),
    PATH: {"get": {"summary": "this document", "responses": {"200": {
        "description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
}


def document() -> dict[str, Any]:
    """The OpenAPI document (its parts are shared: do not change them)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "gearshift JSON API", "version": __version__,
                 "description": "What the admin protocol tells, and its actions; see "
                                "docs/operations.md, \"JSON API\". Actions (POST) are "
                                "accepted only from --admin-from addresses."},
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
