"""The HTTP listener: one aiohttp application on the server's event loop.

Routes: ``/healthz``, ``/readyz``, ``/metrics`` (_metrics.py), ``/api/...`` (_api.py),
``/`` (the dashboard, _dashboard.py) and, with ``-r http``, gearmand's HTTP protocol on
every other path (_gearman_http.py). With ``--acl``, a middleware (_auth.py) checks each
request's bearer token and rights before its handler runs.

With ``-r http`` the port's connections go to _front.py first, which answers gearmand's
submissions itself (httptools) and hands every other connection to this application.
aiohttp parses HTTP, so a malformed request gets its 400 and never reaches a handler;
every handler is a coroutine that only reads broker state or feeds it one request, so a
slow or silent HTTP client holds its own connection and nothing else -- the Gearman
port's callbacks run between any two of its reads. Bodies are capped at
``--max-packet-size`` (413). An error in a handler is logged and answered with a bare
500: a response never carries a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware

from gearshift._version import __version__
from gearshift.http._api import Api
from gearshift.http._auth import RIGHTS
from gearshift.http._gearman_http import answer, function_name, priority_of, submit
from gearshift.http._metrics import Metrics

if TYPE_CHECKING:
    from gearshift.http._front import Front
    from gearshift.server._server import Server

log = logging.getLogger("gearshift.http")

#: With ``-r http``, the paths that name a function: every one but gearshift's own
#: (``/api/...``, ``/metrics``, ``/healthz``, ``/readyz``; ``GET /`` is the dashboard),
#: which keep their 404 and 405 answers.
FUNCTION_PATH = r"/{function:(?!api/|api$|metrics$|healthz$|readyz$).*}"

#: Seconds an idle keep-alive HTTP connection is kept open.
KEEPALIVE_TIMEOUT = 15.0

#: Seconds requests still being answered get at shutdown (after running jobs finished).
SHUTDOWN_TIMEOUT = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _no_tracebacks(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return web.Response(status=500, text="internal server error (see the server log)\n")


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = f"gearshift/{__version__}"


class HttpListener:
    """The HTTP side of one :class:`~gearshift.server._server.Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.metrics = Metrics(server)
        self.runner: web.AppRunner | None = None
        self.servers: list[asyncio.Server] = []
        self.front: Front | None = None

    def application(self) -> web.Application:
        config = self.server.config
        middlewares: list[Middleware] = [_no_tracebacks]
        if config.acl is not None:  # --acl: tokens and rights (http/_auth.py)
            from gearshift.http._auth import middleware

            middlewares.append(middleware(config.acl))
        app = web.Application(client_max_size=config.max_packet_size,
                              middlewares=middlewares)
        app.on_response_prepare.append(_server_header)
        app.add_routes([
            web.get("/healthz", self.healthz),
            web.get("/readyz", self.readyz),
            web.get("/metrics", self.render_metrics),
            *Api(self.server).routes(),
        ])
        from gearshift.http._dashboard import routes as dashboard_routes

        app.add_routes(dashboard_routes())
        if config.http_protocol:
            for method in ("GET", "HEAD", "POST", "PUT"):
                app.router.add_route(method, FUNCTION_PATH, self.gearman_http)
        return app

    async def start(self) -> None:
        """Bind every HTTP address; raises OSError (the caller closes what was bound).

        aiohttp's request handlers serve the port; with ``-r http`` the fast path
        (_front.py) takes each connection first and hands aiohttp those that are not
        gearmand submissions."""
        config = self.server.config
        self.runner = web.AppRunner(self.application(), access_log=None,
                                    handle_signals=False, handler_cancellation=True,
                                    keepalive_timeout=KEEPALIVE_TIMEOUT,
                                    shutdown_timeout=SHUTDOWN_TIMEOUT)
        await self.runner.setup()
        handlers = self.runner.server
        assert handlers is not None  # set up above
        factory: Callable[[], asyncio.BaseProtocol] = handlers
        if config.http_protocol and config.acl is None:
            # (With --acl every request goes through aiohttp, whose middleware checks
            # tokens and rights: the fast path does not read Authorization.)
            from gearshift.http._front import Front

            factory = self.front = Front(self.server.pump, handlers,
                                         config.max_packet_size, KEEPALIVE_TIMEOUT)
        loop = asyncio.get_running_loop()
        hosts: list[str | None] = list(config.http_listen or config.listen) or [None]
        for host in hosts:
            self.servers.append(await loop.create_server(
                factory, host, config.http_port or 0, backlog=config.backlog,
                reuse_address=True))

    @property
    def ports(self) -> list[int]:
        """The bound ports (useful with --http-port 0)."""
        return sorted({int(sock.getsockname()[1]) for srv in self.servers
                       for sock in srv.sockets})

    async def close(self) -> None:
        for srv in self.servers:
            srv.close()
        self.servers = []
        if self.front is not None:
            self.front.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # ------------------------------------------------------------- handlers

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        problem = self.server.not_ready()
        if problem:
            return web.Response(status=503, text=problem + "\n")
        return web.Response(text="ready\n")

    async def render_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=await self.metrics.render(),
                            headers={"Content-Type": "text/plain; version=0.0.4; "
                                                     "charset=utf-8"})

    async def gearman_http(self, request: web.Request) -> web.StreamResponse:
        """gearmand's HTTP protocol on any path not listed above, for the requests the
        fast path (_front.py) hands over: its answers are the same."""
        function = function_name(request.raw_path)
        if not function:
            # gearmand: no function name -> 404 with its reason phrase, empty body.
            return web.Response(status=404, reason="NOT_FOUND")
        data = await request.read() if request.method in ("POST", "PUT") else b""
        headers = request.headers
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ptype, fields = await submit(
            self.server.pump, (str(peer[0]), int(peer[1])) if peer else ("", 0), function,
            headers.get("X-Gearman-Unique", "").encode("utf-8", "surrogateescape"), data,
            headers.get("X-Gearman-Background", "").lower() == "true",
            priority_of(headers.get("X-Gearman-Priority", "")),
            # --acl: the middleware checked the submit right; the job's connection
            # carries the identity's rights (None without --acl: unchanged)
            request.get(RIGHTS))
        if ptype is None:
            return web.Response(status=503, text=fields[0].decode() + "\n",
                                headers={"Retry-After": "1"})
        handle, command, body = answer(ptype, fields)
        if request.method == "HEAD":
            # gearmand: no command header; Content-Length is the result's, without the body.
            return web.Response(status=200, headers={"X-Gearman-Job-Handle": handle,
                                                     "Content-Length": str(len(body))})
        return web.Response(status=200, body=body, headers={
            "X-Gearman-Job-Handle": handle, "X-Gearman-Command": command})
