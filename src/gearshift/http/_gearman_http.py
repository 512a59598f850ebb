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

This module knows no HTTP library: _front.py (the fast path, httptools) and _app.py
(aiohttp, for requests the fast path hands over) both call :func:`open_submission` and
format what :func:`answer` returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

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


#: Called once with the broker's answer: (packet type, fields), or (None, [reason]) when
#: the connection was refused or closed before an answer.
OnReply = Callable[[int | None, list[bytes]], None]


class LoopbackTransport:
    """The transport of an in-process Gearman client connection.

    Implements what :class:`GearmanConnection` and the server's shutdown call on a
    transport; ``write`` parses the broker's replies and calls ``on_reply`` once, with
    the one that answers the HTTP request.
    """

    __slots__ = ("_closing", "_extra", "answered", "background", "connection", "on_reply",
                 "reader")

    def __init__(self, host: str, port: int, background: bool, max_packet_size: int,
                 on_reply: OnReply) -> None:
        # A reply is at most a worker's packet (result) plus the handle.
        self.reader = PacketReader(expect=RES, max_packet_size=max_packet_size + 1024,
                                   allow_text=False)
        self.background = background
        self.on_reply = on_reply
        self.answered = False
        self.connection: Any = None
        self._extra = {"peername": (host, port)}
        self._closing = False

    def write(self, data: bytes) -> None:
        for ptype, fields in self.reader.feed(data):
            if self.answered or ptype not in _ANSWERS:
                continue  # WORK_DATA, WORK_STATUS, WORK_WARNING: not forwarded
            if ptype == P.JOB_CREATED and not self.background:
                continue  # a foreground request waits for the result
            self.answered = True
            self.on_reply(ptype, fields)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        connection = self.connection
        if connection is not None:
            connection.connection_lost(None)
            self.connection = None  # no cycle left for the collector
        if not self.answered:
            self.answered = True
            # No peer: closed from connection_made, by Pump.refuse.
            self.on_reply(None, [b"the server is not taking jobs" if connection is None
                                 or connection.peer is not None
                                 else b"too many connections (--max-connections)"])
        self.on_reply = _answered

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        """Nothing to pause: the one request was fed already."""

    def resume_reading(self) -> None:
        """See :meth:`pause_reading`."""


def _answered(ptype: int | None, fields: list[bytes]) -> None:
    """A closed transport's ``on_reply`` (the caller's callback is let go)."""


def priority_of(header: str) -> str:
    """``X-Gearman-Priority``'s value as gearmand reads it: high, low, else normal."""
    priority = header.lower()
    return priority if priority in ("high", "low") else "normal"


def open_submission(pump: Pump, peer: tuple[str, int], function: bytes, unique: bytes,
                    data: bytes, background: bool, priority: str,
                    on_reply: OnReply, rights: Rights | None = None) -> LoopbackTransport:
    """Submit one job through the broker as a new Gearman client connection would.

    ``on_reply`` is called once, from the broker's flush (or at once when refused);
    the caller closes the returned transport once answered, or to give up (the HTTP
    client left), which drops a foreground job nobody else waits for. ``rights``: the
    ``--acl`` identity of the request's bearer token (http/_auth.py), None without.
    """
    transport = LoopbackTransport(peer[0], peer[1], background, pump.max_packet_size,
                                  on_reply)
    connection = transport.connection = pump.connection()
    connection.connection_made(transport)  # refused: closes, which answers
    if connection.peer is None:
        return transport
    if rights is not None:
        connection.peer.rights = rights
    connection.data_received(encode_request(
        _SUBMIT[background, priority], function, unique or DEFAULT_UNIQUE, data))
    return transport


def answer(ptype: int, fields: list[bytes]) -> tuple[str, str, bytes]:
    """(X-Gearman-Job-Handle, X-Gearman-Command, body) for the broker's answer.

    ERROR: gearmand puts the error code where the handle goes; only a WORK_COMPLETE
    has a body."""
    body = fields[1] if ptype == P.WORK_COMPLETE else b""
    return fields[0].decode("utf-8", "replace"), _ANSWERS[ptype], body


async def submit(pump: Pump, peer: tuple[str, int], function: bytes, unique: bytes,
                 data: bytes, background: bool, priority: str,
                 rights: Rights | None = None) -> tuple[int | None, list[bytes]]:
    """:func:`open_submission` awaited: the broker's answer, as ``on_reply`` gets it."""
    reply: asyncio.Future[tuple[int | None, list[bytes]]] = (
        asyncio.get_running_loop().create_future())

    def on_reply(ptype: int | None, fields: list[bytes]) -> None:
        if not reply.done():
            reply.set_result((ptype, fields))

    transport = open_submission(pump, peer, function, unique, data, background, priority,
                                on_reply, rights)
    try:
        return await reply
    finally:
        transport.close()


def function_name(raw_path: str) -> bytes:
    """The function a request names: its raw path (query included, not percent-decoded,
    as gearmand reads it) with the leading slashes removed."""
    return raw_path.lstrip("/").encode("utf-8", "surrogateescape")
