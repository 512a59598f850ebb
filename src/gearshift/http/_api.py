"""The JSON API under ``/api/``: what the admin protocol tells, for programs and the
dashboard, and the admin actions (cancel, maxqueue, retry/purge dead letters). Described
by the OpenAPI document at ``/api/openapi.json`` (_openapi.py).

Job and dead-letter records are the ones the admin ``result`` and ``dead`` commands
print (broker/_admin_outcomes.py builds both); names are text (UTF-8, invalid bytes
replaced), payloads and results base64. Reference: docs/operations.md, "JSON API".

Every action runs on the event loop between two batches of Gearman packets, as an
admin command does, and then has the server flush what it caused (a NOOP to a worker
for a retried dead letter, WORK_FAIL to the client of a cancelled job).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from gearshift.broker._access import AdminAccess
from gearshift.broker._admin_flow import FlowCommands, flow_record, flow_records
from gearshift.broker._admin_outcomes import (
    OutcomeCommands,
    cluster_json,
    job_json,
    schedule_json,
)
from gearshift.broker._model import PRIORITY_NAMES, QUEUED, Function, Job
from gearshift.http._openapi import PATH as OPENAPI_PATH
from gearshift.http._openapi import document

if TYPE_CHECKING:
    from gearshift.server._server import Server

#: Most records one page lists (``?limit=``, default 100): jobs of a function, dead letters.
MAX_PAGE: Final = 1000


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _name(request: web.Request, key: str = "name") -> bytes:
    return request.match_info[key].encode("utf-8", "surrogateescape")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda obj: json.dumps(obj, separators=(",", ":")))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def function_json(func: Function) -> dict[str, Any]:
    return {
        "function": _text(func.name),
        "queued": {name: func.depth(p) for p, name in enumerate(PRIORITY_NAMES)},
        "scheduled": func.scheduled, "running": func.running, "workers": len(func.workers),
        "max_queue": dict(zip(PRIORITY_NAMES, func.max_queue, strict=True)),
        "submitted": func.submitted, "completed": func.completed, "failed": func.failed,
        "retried": func.retried, "dead": func.dead,
        "paused": func.flow is not None and func.flow.paused, "held": func.blocked,
    }


def _queued(func: Function) -> Iterator[Job]:
    """``func``'s queued jobs in memory, most urgent first, oldest first, without copying
    queues (a deep queue's jobs that are only in the store are not listed)."""
    for queue in func.queues:
        for job in itertools.islice(queue.items, queue.head, None):
            if job is not None and job.state == QUEUED:
                yield job


def _running(func: Function) -> Iterator[Job]:
    for worker in func.workers:
        for job in worker.held:
            if job.function is func:
                yield job


Handler = Callable[[web.Request], Awaitable[web.Response]]


class Api:
    """The handlers; :meth:`routes` lists them for the application."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.broker = server.broker
        self.outcomes = OutcomeCommands(server.broker)
        self.access = AdminAccess(server.broker.config.admin_from)
        self.flow = FlowCommands(server.broker)
        self._openapi: bytes | None = None  # the document, serialised once

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/functions", self.functions),
            web.get("/api/functions/{name}/jobs", self.function_jobs),
            web.post("/api/functions/{name}/maxqueue", self._guarded(self.maxqueue)),
            web.post("/api/functions/{name}/pause", self._guarded(self.pause)),
            web.post("/api/functions/{name}/resume", self._guarded(self.resume)),
            web.get("/api/limits", self.limits),
            web.get("/api/workers", self.workers),
            web.get("/api/jobs/{handle}", self.job),
            web.post("/api/jobs/{handle}/cancel", self._guarded(self.cancel)),
            web.get("/api/dead", self.dead),
            web.post("/api/dead/retry", self._guarded(self.retry_dead)),
            web.post("/api/dead/purge", self._guarded(self.purge_dead)),
            web.get("/api/schedules", self.schedules),
            web.get("/api/cluster", self.cluster),
            web.get("/api/server", self.about),
            web.get(OPENAPI_PATH, self.openapi),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        """An action that changes state: 403 unless the caller's address is allowed by
        ``--admin-from`` (loopback by default), as for the admin text commands."""
        async def guarded(request: web.Request) -> web.Response:
            if not self.access.allows(request.remote or ""):
                return _error(403, "actions are accepted only from --admin-from addresses "
                                   "(default: loopback)")
            return await handler(request)
        return guarded

    def _act(self, action: Callable[[], Any]) -> Any:
        """Run a state change as a batch of its own, then let the server flush."""
        self.broker._now = 0.0  # the batch clock: read afresh (see BrokerState.now)
        result = action()
        self.server.pump.after_batch()
        return result

    # ------------------------------------------------------------- reading

    async def functions(self, request: web.Request) -> web.Response:
        return _json([function_json(f) for f in self.broker.functions.values()])

    async def function_jobs(self, request: web.Request) -> web.Response:
        func = self.broker.functions.get(_name(request))
        if func is None:
            return _error(404, "no such function")
        state = request.query.get("state", "queued")
        if state not in ("queued", "running"):
            return _error(400, "state must be 'queued' or 'running'")
        offset, limit = _page(request)
        jobs = _queued(func) if state == "queued" else _running(func)
        page = [job_json(j) for j in itertools.islice(jobs, offset, offset + limit)]
        return _json({"function": _text(func.name), "state": state, "offset": offset,
                      "jobs": page})

    async def workers(self, request: web.Request) -> web.Response:
        return _json([{
            "id": peer.id, "host": peer.host, "port": peer.port,
            "client_id": _text(peer.client_id),
            "functions": [_text(f.name) for f in peer.functions],
            "running": [_text(j.handle) for j in peer.held],
        } for peer in self.broker.peers.values() if peer.functions])

    async def job(self, request: web.Request) -> web.Response:
        record = self.outcomes.lookup(_name(request, "handle"))
        return _error(404, "no such job (never existed, or its outcome expired)") \
            if record is None else _json(record)

    async def dead(self, request: web.Request) -> web.Response:
        function = request.query.get("function")
        offset, limit = _page(request)
        return _json(self.outcomes.dead_records(
            None if function is None else function.encode("utf-8", "surrogateescape"),
            offset, limit))

    async def schedules(self, request: web.Request) -> web.Response:
        return _json([schedule_json(s) for s in self.broker.schedules.schedules.values()])

    async def cluster(self, request: web.Request) -> web.Response:
        return _json(cluster_json(self.broker))

    async def about(self, request: web.Request) -> web.Response:
        from gearshift._build import build_name
        from gearshift._version import __version__

        return _json({"version": __version__, "build": build_name(),
                      "connections": len(self.broker.peers), "jobs": len(self.broker.jobs),
                      "store": self.server.config.store if self.server.durable else "memory"})

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = json.dumps(document(), separators=(",", ":")).encode()
        return web.Response(body=self._openapi, content_type="application/json")

    # ------------------------------------------------------------- actions

    async def cancel(self, request: web.Request) -> web.Response:
        handle = _name(request, "handle")
        if not self._act(lambda: self.broker.cancel(handle)):
            return _error(404, "no queued job with that handle (running jobs cannot be "
                               "cancelled)")
        return _json({"cancelled": _text(handle)})

    async def maxqueue(self, request: web.Request) -> web.Response:
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        value = body.get("max") if isinstance(body, dict) else None
        if isinstance(value, int) and value >= 0:
            limits = [value] * 3
        elif isinstance(value, dict) and all(
                isinstance(value.get(p), int) and value[p] >= 0 for p in PRIORITY_NAMES):
            limits = [value[p] for p in PRIORITY_NAMES]
        else:
            return _error(400, 'body must be {"max": N} or {"max": {"high": N, "normal": '
                               'N, "low": N}} with N >= 0 (0 = unlimited)')
        name = _name(request)
        self._act(lambda: self.broker.set_max_queue(name, limits))
        return _json({"function": _text(name), "max_queue": dict(zip(PRIORITY_NAMES, limits,
                                                                      strict=True))})

    async def limits(self, request: web.Request) -> web.Response:
        return _json(flow_records(self.broker))

    async def pause(self, request: web.Request) -> web.Response:
        return self._flow(request, b"pause")

    async def resume(self, request: web.Request) -> web.Response:
        return self._flow(request, b"resume")

    def _flow(self, request: web.Request, verb: bytes) -> web.Response:
        """As admin ``pause``/``resume`` (persisted alike): the function's limits record."""
        name = _name(request)
        reply = self._act(lambda: self.flow.table[verb]([verb, name]))
        if not reply.startswith(b"OK"):
            return _error(400, reply.decode("utf-8", "replace").strip())
        return _json(flow_record(self.broker, name, self.broker.functions.get(name)))

    async def retry_dead(self, request: web.Request) -> web.Response:
        return await self._on_dead(request, b"retry")

    async def purge_dead(self, request: web.Request) -> web.Response:
        return await self._on_dead(request, b"purge")

    async def _on_dead(self, request: web.Request, verb: bytes) -> web.Response:
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        handles = self._dead_selection(body)
        if handles is None:
            return _error(400, 'body must be {"handles": [...]}, {"function": NAME} or '
                               '{"all": true}')
        done = self._act(lambda: self.outcomes.act_on_dead(verb, handles))
        return _json({verb.decode(): done})

    def _dead_selection(self, body: Any) -> list[bytes] | None:
        if not isinstance(body, dict) or len(body) != 1:
            return None
        if body.get("all") is True:
            return self.outcomes.select_dead()
        if isinstance(body.get("function"), str):
            return self.outcomes.select_dead(body["function"].encode())
        handles = body.get("handles")
        if isinstance(handles, list) and all(isinstance(h, str) for h in handles):
            return [h.encode() for h in handles]
        return None


def _page(request: web.Request) -> tuple[int, int]:
    """``?offset=&limit=`` (default 0 and 100); HTTP 400 when out of range."""
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({
            "error": "offset and limit must be whole numbers"}),
            content_type="application/json") from None
    if offset < 0 or not 0 < limit <= MAX_PAGE:
        raise web.HTTPBadRequest(text=json.dumps({
            "error": f"offset must be >= 0 and limit 1..{MAX_PAGE}"}),
            content_type="application/json")
    return offset, limit


async def _body(request: web.Request) -> Any:
    """The request's JSON body, or a 400 response saying it is not JSON."""
    try:
        return await request.json()
    except ValueError:
        return _error(400, "the body must be JSON")
