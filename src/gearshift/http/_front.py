"""The fast path of gearmand's HTTP protocol (``-r http``): the HTTP port's own protocol.

Why not aiohttp for submissions: measured on this project's VM (docs/benchmarks.md,
round 3), aiohttp's per-connection machinery (a request-handler object, a stream
reader, a task, keep-alive timers) and per-request objects (request, response, router
match, middleware) cost 5x gearmand's C per submission on a new connection each time,
which is how gearmand's plugin serves (it closes after every answer). This protocol
parses with httptools (llhttp, the C parser aiohttp and uvicorn use) and answers a
submission with one prebuilt-header ``write``; the work per request is llhttp, a few
callbacks and the Gearman submission itself (_gearman_http.py).

Which requests it answers: the first request of each connection decides. A submission
(GET, HEAD, POST or PUT on a path that names a function, plain ASCII, HTTP/1.x, Host
given on HTTP/1.1, no Upgrade or Expect) is answered here, and so are the submissions
that follow on that connection. Anything else -- gearshift's own paths (``/api/``,
``/metrics``, ``/healthz``, ``/readyz``, the dashboard at ``/``), an unusual request, a
malformed one -- hands the connection to aiohttp with the bytes received so far, exactly
as they came: aiohttp answers it and every later request on it (its 400s, 404s, 405s,
limits and keep-alive). A request on a submission connection that is not a submission
is handed over rebuilt from what was parsed, with ``Connection: close`` (anything sent
behind it is dropped, as HTTP allows after a close; clients retry it on a new
connection); a malformed one there is answered 400 and the connection closed.

Requests on one connection are answered in order, one submission at a time (HTTP/1.1
pipelining queues the rest, reading paused beyond :data:`MAX_QUEUED`). Bodies beyond
``--max-packet-size`` are read and discarded, then answered 413 and the connection
closed. A connection idle for :data:`~gearshift.http._app.KEEPALIVE_TIMEOUT` seconds
with no submission waiting is closed (one sweep every few seconds, not a timer per
request).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from typing import Any, Final

import httptools

from gearshift._version import __version__
from gearshift.http._gearman_http import (
    LoopbackTransport,
    answer,
    open_submission,
    priority_of,
)
from gearshift.server._wire import Pump

#: Requests parsed but not yet answered on one connection before it stops reading.
MAX_QUEUED: Final = 16

#: Largest request head (request line and headers) answered here; aiohttp's limits are
#: 8190 bytes a line, so a larger head is aiohttp's to refuse.
MAX_HEAD: Final = 8190

#: Seconds between sweeps for idle connections.
SWEEP_INTERVAL: Final = 5.0

_SUBMITTING: Final = frozenset((b"GET", b"HEAD", b"POST", b"PUT"))
#: The function-path exclusions of _app.FUNCTION_PATH, as the part of the path after "/".
_RESERVED: Final = (b"api/",)
_RESERVED_EXACT: Final = frozenset((b"api", b"metrics", b"healthz", b"readyz"))
#: The header fields read here (lower case), by what they mean; Upgrade and Expect send
#: a request to aiohttp.
_BACKGROUND, _PRIORITY, _UNIQUE, _HOST, _LENGTH, _FOREIGN = range(6)
_FIELDS: Final = {b"x-gearman-background": _BACKGROUND, b"x-gearman-priority": _PRIORITY,
                  b"x-gearman-unique": _UNIQUE, b"host": _HOST,
                  b"content-length": _LENGTH, b"upgrade": _FOREIGN, b"expect": _FOREIGN}
#: Headers a rebuilt request does not copy (it gets its own length and close).
_HOP: Final = frozenset((b"connection", b"keep-alive", b"content-length",
                         b"transfer-encoding"))

_SERVER: Final = f"Server: gearshift/{__version__}\r\n".encode()


class _Stop(Exception):
    """Raised in a parser callback to stop llhttp (httptools reports it as the context
    of an HttpParserCallbackError): :attr:`FrontProtocol.raw_hand_off` says why."""


class _Request:
    """One parsed request: what the answer needs."""

    __slots__ = ("background", "body", "foreign", "head_size", "headers", "host",
                 "keep_alive", "malformed", "method", "priority", "size", "too_large",
                 "unique", "url", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.method = b""
        self.version = "1.1"
        self.keep_alive = True
        self.head_size = 0
        self.background = b""
        self.priority = b""
        self.unique = b""
        self.host = False
        self.foreign = False
        self.too_large = False
        self.malformed = False


class _Date:
    """The ``Date`` header, formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.header = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.header = f"Date: {formatdate(now, usegmt=True)}\r\n".encode()
        return self.header


#: What a closed connection's parser is (see FrontProtocol.connection_lost).
_NO_PARSER: Final = httptools.HttpRequestParser(None)


class Front:
    """The HTTP port's protocol factory with ``-r http``: its connections, the idle
    sweep, and the aiohttp handler factory connections are handed to."""

    def __init__(self, pump: Pump, handler_factory: Callable[[], asyncio.Protocol],
                 max_body: int, keepalive_timeout: float) -> None:
        self.pump = pump
        self.handler_factory = handler_factory
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.connections: set[FrontProtocol] = set()
        self.date = _Date()
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> FrontProtocol:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL,
                                                                  self._sweep)
        return FrontProtocol(self)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        idle_since = loop.time() - self.keepalive_timeout
        for conn in list(self.connections):
            if conn.current is None and conn.last < idle_since:
                conn.close()
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def close(self) -> None:
        """Close every connection still served here (shutdown); submissions waiting are
        dropped as their clients' leaving would."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections):
            conn.close()


class FrontProtocol(asyncio.Protocol):
    """One HTTP connection while it is served here (see the module docstring)."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.peer: tuple[str, int] = ("", 0)
        #: every byte received until the first request is routed (then None)
        self.head: bytearray | None = bytearray()
        self.request = _Request()  # the one being parsed
        self.queue: deque[_Request] = deque()  # parsed, waiting for their turn
        self.current: _Request | None = None  # the one being answered
        self.submission: LoopbackTransport | None = None
        self.stopped = False  # parsing ended (handed over, or malformed)
        #: the first request goes to aiohttp as received (set before raising _Stop)
        self.raw_hand_off = False
        self.closed = False
        self.last = 0.0

    # ------------------------------------------------------------ transport side

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = (str(peer[0]), int(peer[1]))
        self.last = asyncio.get_running_loop().time()
        self.front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        self.last = asyncio.get_running_loop().time()
        head = self.head
        if head is not None:
            head += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            ours = isinstance(exc.__context__, _Stop)
            head = self.head  # None once the first request was routed here
            if head is not None and (self.raw_hand_off or not ours):
                # The first request is not ours, or llhttp refused it: aiohttp
                # answers it (its 400 for the malformed) from the raw bytes.
                self._hand_off(bytes(head))
            elif not ours or self.request.malformed:
                self._malformed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        # The parser refers back to this protocol: without this the pair would wait for
        # the cycle collector, which then runs every few hundred connections.
        self.parser = _NO_PARSER
        self.current = None
        self.queue.clear()
        self.front.connections.discard(self)
        submission, self.submission = self.submission, None
        if submission is not None:
            submission.close()  # a foreground job nobody else waits for goes

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self.request = _Request()

    def on_url(self, url: bytes) -> None:
        request = self.request
        request.url += url
        request.head_size += len(url)
        if request.head_size > MAX_HEAD:
            self._too_long()

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.request
        request.headers.append((name, value))
        size = request.head_size = request.head_size + len(name) + len(value) + 4
        if size > MAX_HEAD:
            self._too_long()
        field = _FIELDS.get(name.lower())
        if field is None:
            return
        value = value.rstrip(b" \t")  # not part of the value (RFC 9110 5.5), as aiohttp
        if field == _BACKGROUND:
            if not request.background:
                request.background = value
        elif field == _PRIORITY:
            if not request.priority:
                request.priority = value
        elif field == _UNIQUE:
            if not request.unique:
                request.unique = value
        elif field == _HOST:
            request.host = True
        elif field == _LENGTH:
            if value.isdigit() and int(value) > self.front.max_body:
                request.too_large = True
        else:
            request.foreign = True

    def on_headers_complete(self) -> None:
        request = self.request
        parser = self.parser
        request.method = parser.get_method()
        request.version = parser.get_http_version()
        request.keep_alive = parser.should_keep_alive()
        if request.foreign or not self._submits(request):
            request.foreign = True
            if self.head is not None:
                self.raw_hand_off = True  # the first request: aiohttp gets the raw bytes
                raise _Stop
        elif self.head is not None:
            self.head = None  # this connection is served here

    def on_body(self, body: bytes) -> None:
        request = self.request
        request.size += len(body)
        if request.size > self.front.max_body:
            request.too_large = True
            request.body = []
        elif not request.too_large:
            request.body.append(body)

    def on_message_complete(self) -> None:
        request = self.request
        if self.current is None and not self.queue:
            self._serve(request)
        else:
            self.queue.append(request)
            if len(self.queue) >= MAX_QUEUED:
                self.transport.pause_reading()
        if request.foreign:
            # Handed over once its turn comes; nothing after it is read.
            self.stopped = True
            raise _Stop

    def _too_long(self) -> None:
        """A request line or head beyond MAX_HEAD: aiohttp's to refuse when it is the
        connection's first request, else answered 400 here."""
        if self.head is not None:
            self.raw_hand_off = True
        else:
            self.request.malformed = True
        raise _Stop

    @staticmethod
    def _submits(request: _Request) -> bool:
        """Whether ``request`` is one of gearmand's submissions answered here."""
        url = request.url
        if (request.method not in _SUBMITTING or request.version not in ("1.1", "1.0")
                or (request.version == "1.1" and not request.host)
                or not url.startswith(b"/") or not url.isascii()
                or b"%" in url or b"#" in url):
            return False
        path = url.partition(b"?")[0][1:]  # what _app.FUNCTION_PATH's pattern sees
        if path.startswith(_RESERVED) or path in _RESERVED_EXACT:
            return False
        # GET / and HEAD / are the dashboard.
        return bool(path) or request.method not in (b"GET", b"HEAD")

    # ------------------------------------------------------------ answering

    def _serve(self, request: _Request) -> None:
        """Answer ``request`` (its turn has come)."""
        if request.foreign:
            self._hand_off(_rebuilt(request))
            return
        if request.malformed:
            self._respond(request, b"400 Bad Request",
                          b"Content-Type: text/plain; charset=utf-8\r\n",
                          b"400: Bad Request", close=True)
            return
        if request.too_large:
            self._respond(request, b"413 Request Entity Too Large",
                          b"Content-Type: text/plain; charset=utf-8\r\n",
                          b"Maximum request body size %d exceeded, actual body size %d"
                          % (self.front.max_body, request.size), close=True)
            return
        function = request.url.lstrip(b"/")
        if not function:
            # gearmand: no function name -> 404 with its reason phrase, empty body.
            self._respond(request, b"404 NOT_FOUND",
                          b"Content-Type: application/octet-stream\r\n", b"")
            return
        self.current = request
        data = b"".join(request.body) if request.method in (b"POST", b"PUT") else b""
        submission = open_submission(
            self.front.pump, self.peer, function, request.unique, data,
            request.background.lower() == b"true",
            priority_of(request.priority.decode("latin-1")), self._reply)
        if self.current is request:
            self.submission = submission  # the broker answers from its flush
        else:
            submission.close()  # answered already (refused)

    def _reply(self, ptype: int | None, fields: list[bytes]) -> None:
        """The broker's answer to the current request (see LoopbackTransport)."""
        request = self.current
        if request is None or self.closed:
            return
        self.current = None
        submission, self.submission = self.submission, None
        if ptype is None:
            self._respond(request, b"503 Service Unavailable",
                          b"Content-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n",
                          fields[0] + b"\n")
        else:
            handle, command, body = answer(ptype, fields)
            extra = b"X-Gearman-Job-Handle: " + handle.encode() + b"\r\n"
            if request.method == b"HEAD":
                # gearmand: no command header; Content-Length is the result's.
                self._respond(request, b"200 OK", extra, body)
            else:
                self._respond(request, b"200 OK", extra + b"X-Gearman-Command: "
                              + command.encode() + b"\r\nContent-Type: "
                              b"application/octet-stream\r\n", body)
        if submission is not None:
            submission.close()

    def _respond(self, request: _Request, status: bytes, headers: bytes, body: bytes,
                 close: bool = False) -> None:
        keep_alive = request.keep_alive and not close
        if request.version == "1.0":
            start = b"HTTP/1.0 "
            connection = b"Connection: keep-alive\r\n" if keep_alive else b""
        else:
            start = b"HTTP/1.1 "
            connection = b"" if keep_alive else b"Connection: close\r\n"
        self.transport.write(
            b"%s%s\r\n%s%s%sContent-Length: %d\r\n%s\r\n%s"
            % (start, status, headers, _SERVER, self.front.date.get(), len(body),
               connection, b"" if request.method == b"HEAD" else body))
        self.last = asyncio.get_running_loop().time()
        if not keep_alive:
            self.stopped = True
            self.transport.close()
        elif self.queue and self.current is None:
            # Pipelined requests: the next one in a later callback, not inside the
            # broker's flush that may have called us.
            asyncio.get_running_loop().call_soon(self._next)

    def _next(self) -> None:
        while self.queue and self.current is None and not self.closed:
            request = self.queue.popleft()
            if len(self.queue) == MAX_QUEUED - 1 and not self.stopped:
                self.transport.resume_reading()
            self._serve(request)
            if request.foreign or not request.keep_alive:
                return

    def _malformed(self) -> None:
        """A request that llhttp refused, after submissions on this connection."""
        self.stopped = True
        bad = _Request()
        bad.malformed = True
        if self.current is None and not self.queue:
            self._serve(bad)
        else:
            self.queue.append(bad)

    def _hand_off(self, data: bytes) -> None:
        """The connection becomes aiohttp's, fed ``data`` as if it had just arrived."""
        self.stopped = True
        self.front.connections.discard(self)
        if self.closed:
            return
        handler = self.front.handler_factory()
        transport = self.transport
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)
        transport.resume_reading()


def _rebuilt(request: _Request) -> bytes:
    """``request`` as bytes for aiohttp: its own headers, a Content-Length for the body
    as received (de-chunked) and ``Connection: close``."""
    body = b"".join(request.body)
    head = [b"%s %s HTTP/%s\r\n" % (request.method, request.url, request.version.encode())]
    head += [name + b": " + value + b"\r\n" for name, value in request.headers
             if name.lower() not in _HOP]
    head.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
    return b"".join(head) + body
