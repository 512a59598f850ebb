"""gearmand's HTTP protocol (``-r http``): ``POST /FUNCTION`` submits a job.

Each HTTP request becomes one Gearman client connection to the broker, exactly as a
client on the Gearman port is: a :class:`~gearshift.server._wire.GearmanConnection`
whose transport is :class:`LoopbackTransport` rather than a socket. The request is
encoded as a SUBMIT_JOB* packet and fed to the connection; the broker's replies arrive
through the transport's ``write`` and are parsed back into packets. So coalescing,
priorities, maxqueue, stores and the admin listings treat an HTTP submitter like any
other client, and the Gearman port's code paths gain nothing per packet.

Answers, as gearmand 1.1's plugin gives them (differences: docs/compatibility.md):

* foreground: waits for the job; ``200`` with ``X-Gearman-Job-Handle``,
  ``X-Gearman-Command: WORK_COMPLETE`` and the result as body, or ``WORK_FAIL`` and an
  empty body;
* background (``X-Gearman-Background: true``): ``200`` with ``JOB_CREATED`` once the
  job is queued (stored, with a durable store);
* an ERROR from the broker (unique too long, queue full): ``200``, the error code in
  ``X-Gearman-Job-Handle``, ``X-Gearman-Command: ERROR``;
* no function name (``POST /``): ``404`` with reason ``NOT_FOUND``.

The HTTP client going away drops its connection, and with it a foreground job nobody
else waits for, as a Gearman client's disconnect does.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from aiohttp import web

from gearshift.broker._acl import Rights
from gearshift.protocol import RES, PacketReader, PacketType, encode_request
from gearshift.server._wire import Pump

P = PacketType

#: (background, priority header) -> the submission packet gearmand's plugin sends.
_SUBMIT: Final = {
    (False, "high"): P.SUBMIT_JOB_HIGH, (False, "normal"): P.SUBMIT_JOB,
    (False, "low"): P.SUBMIT_JOB_LOW, (True, "high"): P.SUBMIT_JOB_HIGH_BG,
    (True, "normal"): P.SUBMIT_JOB_BG, (True, "low"): P.SUBMIT_JOB_LOW_BG,
}

#: gearmand's default unique for HTTP submissions: "-", i.e. identical bodies to the
#: same function coalesce.
DEFAULT_UNIQUE: Final = b"-"

_ANSWERS: Final = {int(P.WORK_COMPLETE): "WORK_COMPLETE", int(P.WORK_FAIL): "WORK_FAIL",
                   int(P.JOB_CREATED): "JOB_CREATED", int(P.ERROR): "ERROR"}


class ConnectionRefused(Exception):
    """The broker could not take the connection (``--max-connections``, shutdown)."""


class LoopbackTransport:
    """The transport of an in-process Gearman client connection.

    Implements what :class:`GearmanConnection` and the server's shutdown call on a
    transport; ``write`` parses the broker's replies and resolves :attr:`reply` with the
    one that answers the HTTP request.
    """

    def __init__(self, host: str, port: int, background: bool, max_packet_size: int) -> None:
        # A reply is at most a worker's packet (result) plus the handle.
        self.reader = PacketReader(expect=RES, max_packet_size=max_packet_size + 1024,
                                   allow_text=False)
        self.background = background
        self.reply: asyncio.Future[tuple[int, list[bytes]]] = (
            asyncio.get_running_loop().create_future())
        self.connection: Any = None
        self._extra = {"peername": (host, port)}
        self._closing = False

    def write(self, data: bytes) -> None:
        for ptype, fields in self.reader.feed(data):
            if self.reply.done() or ptype not in _ANSWERS:
                continue  # WORK_DATA, WORK_STATUS, WORK_WARNING: not forwarded
            if ptype == P.JOB_CREATED and not self.background:
                continue  # a foreground request waits for the result
            self.reply.set_result((ptype, fields))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.connection is not None:
            self.connection.connection_lost(None)
        if not self.reply.done():
            self.reply.set_exception(ConnectionRefused("the server is not taking jobs"))

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        """Nothing to pause: the one request was fed already."""

    def resume_reading(self) -> None:
        """See :meth:`pause_reading`."""


async def submit(pump: Pump, request: web.Request, function: bytes,
                 data: bytes, rights: Rights | None = None) -> web.Response:
    """Submit one job for ``request`` through the broker and answer as gearmand does;
    ``rights``: the ``--acl`` identity of its bearer token (http/_auth.py)."""
    headers = request.headers
    background = headers.get("X-Gearman-Background", "").lower() == "true"
    priority = headers.get("X-Gearman-Priority", "").lower()
    if priority not in ("high", "low"):
        priority = "normal"
    unique = headers.get("X-Gearman-Unique", "").encode("utf-8", "surrogateescape")
    peer = request.transport.get_extra_info("peername") if request.transport else None
    host, port = (str(peer[0]), int(peer[1])) if peer else ("", 0)
    transport = LoopbackTransport(host, port, background, pump.max_packet_size)
    connection = transport.connection = pump.connection()
    try:
        connection.connection_made(transport)
        if connection.peer is None:
            raise ConnectionRefused("too many connections (--max-connections)")
        if rights is not None:
            connection.peer.rights = rights
        connection.data_received(encode_request(
            _SUBMIT[background, priority], function, unique or DEFAULT_UNIQUE, data))
        ptype, fields = await transport.reply
    except ConnectionRefused as exc:
        return web.Response(status=503, text=f"{exc}\n", headers={"Retry-After": "1"})
    finally:
        transport.close()
    # ERROR: gearmand puts the error code where the handle goes.
    answer = {"X-Gearman-Job-Handle": fields[0].decode("utf-8", "replace")}
    body = fields[1] if ptype == P.WORK_COMPLETE else b""
    if request.method == "HEAD":
        # gearmand: no command header; Content-Length is the result's, without the body.
        answer["Content-Length"] = str(len(body))
        return web.Response(status=200, headers=answer)
    answer["X-Gearman-Command"] = _ANSWERS[ptype]
    return web.Response(status=200, body=body, headers=answer)


def function_name(request: web.Request) -> bytes:
    """The function a request names: its raw path (query included, not percent-decoded,
    as gearmand reads it) with the leading slashes removed."""
    return request.raw_path.lstrip("/").encode("utf-8", "surrogateescape")
