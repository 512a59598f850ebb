"""Bytes <-> Gearman packets, with no I/O.

A packet is represented as a plain ``(type, fields)`` tuple rather than one dataclass per
packet: the server parses several hundred thousand packets a second and a tuple of the
already-split fields is the cheapest shape that still names everything (see
``reference/style.md``: the dispatch path must stay lean). The table in :mod:`._spec`
says how many fields each type has.

The same stream may interleave binary packets and admin text lines: when the first byte
of a new packet is not NUL, everything up to the next ``\\n`` is one text line, returned
as ``(PacketType.TEXT, [line])`` with the trailing ``\\r`` removed.
"""

from __future__ import annotations

import struct
from typing import Final

from mypy_extensions import i64

from gearshift.protocol._spec import (
    ARITY,
    DEFAULT_MAX_PACKET_SIZE,
    HEADER_SIZE,
    MAX_PACKET_TYPE,
    MAX_TEXT_LINE,
    REQ,
    RES,
    ErrorCode,
    PacketType,
)

Packet = tuple[int, list[bytes]]

_HEADER: Final = struct.Struct(">4sII")
_pack_header: Final = _HEADER.pack
_TEXT: Final = int(PacketType.TEXT)
#: Pseudo packet type: a well-framed packet carried the response magic on a server link.
WRONG_MAGIC: Final = -1
#: Field count per packet number, -1 for numbers that are not packets.
_ARITIES: Final = tuple(ARITY.get(i, -1) for i in range(MAX_PACKET_TYPE + 1))


class ProtocolError(Exception):
    """The peer sent bytes that cannot be framed; the connection must be closed.

    Attributes:
        code: the ERROR packet code to send before closing (e.g. ``INVALID_MAGIC``).
        packets: the well-formed packets that preceded the bad bytes in the same feed;
            the caller should still act on them.
    """

    def __init__(self, code: bytes, message: str, packets: list[Packet] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.packets: list[Packet] = packets if packets is not None else []


def encode(ptype: int, *fields: bytes, magic: bytes = RES) -> bytes:
    """Frame one packet: header (magic, type, body length) plus NUL-joined fields."""
    body = b"\0".join(fields)
    return _pack_header(magic, ptype, len(body)) + body


def encode_request(ptype: int, *fields: bytes) -> bytes:
    """Frame one packet as a client or worker sends it (``\\0REQ`` magic)."""
    body = b"\0".join(fields)
    return _pack_header(REQ, ptype, len(body)) + body


def header(ptype: int, body_len: int, magic: bytes = RES) -> bytes:
    """Just the 12-byte header, for callers that write the body separately."""
    return _pack_header(magic, ptype, body_len)


def _nul(data: bytes, i: i64, stop: i64) -> i64:
    """Index of the first NUL in ``data[i:stop]``, or ``stop``. Indexing by i64 is
    compiled to C, where ``bytes.find`` is a call by name."""
    while i < stop and data[i]:
        i += 1
    return i


def _split_fields(data: bytes, start: i64, stop: i64, arity: i64) -> list[bytes]:
    """``data[start:stop].split(b"\\0", arity - 1)``, without slicing the body first.

    The first ``arity - 1`` fields end at a NUL; the last is the rest (it may hold NULs).
    With too few NULs the list is shorter, and the dispatcher answers that. The two- and
    three-field packets (every per-job packet) are built as list displays, which
    allocate the list once instead of growing it per field.
    """
    i = _nul(data, start, stop)
    if i == stop:
        return [data[start:stop]]
    if arity == 2:
        return [data[start:i], data[i + 1 : stop]]
    j = _nul(data, i + 1, stop)
    if j == stop:
        return [data[start:i], data[i + 1 : stop]]
    if arity == 3:
        return [data[start:i], data[i + 1 : j], data[j + 1 : stop]]
    fields = [data[start:i], data[i + 1 : j]]
    start = j + 1
    for _ in range(arity - 3):
        i = _nul(data, start, stop)
        if i == stop:
            break
        fields.append(data[start:i])
        start = i + 1
    fields.append(data[start:stop])
    return fields


class PartialBudget:
    """Bytes held in partly received packets, summed over every reader that shares it.

    A server gives all its connections' readers one budget, so many peers that each send
    most of a large declared body and stall cannot together hold more than ``limit``
    bytes: the read that would go past it is refused (the reader raises ProtocolError
    and that connection is closed). Counted only where a packet is split across reads,
    so packets that arrive whole cost nothing.
    """

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.held = 0
        self.limit = limit


class PacketReader:
    """Incremental parser: feed it received bytes, get back complete packets.

    Args:
        expect: the magic this side accepts (``REQ`` for a server, ``RES`` for a client).
        max_packet_size: largest body accepted; a larger declared size is a protocol
            error *before* any of the body is buffered, so memory stays bounded.
        allow_text: whether admin text lines are accepted (servers: yes; clients: no,
            except the admin client, which parses text with :mod:`._admin`).
        budget: shared limit on the bytes of partly received packets (None: none).

    Attributes:
        started: how many times a packet was left incomplete at the end of a read: the
            identity of the packet now pending, so a server can tell one packet that
            stalls from a stream of packets that each arrive in pieces.
    """

    __slots__ = ("_allow_text", "_budget", "_expect", "_expect_kind", "_held", "_max",
                 "_need", "_other", "_other_kind", "_pending", "started")

    def __init__(
        self,
        expect: bytes = REQ,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        allow_text: bool = True,
        budget: PartialBudget | None = None,
    ) -> None:
        # Bytes of an incomplete packet, and how many bytes it must reach before it is
        # worth parsing again: a large body arriving in many reads is appended, not
        # re-parsed per read, so receiving N bytes costs O(N).
        self._pending = bytearray()
        self._need = 0
        self._expect = expect
        self._other = RES if expect == REQ else REQ
        # The one magic byte that tells the two apart ("Q" or "S").
        self._expect_kind = expect[3]
        self._other_kind = self._other[3]
        self._max = max_packet_size
        self._allow_text = allow_text
        self._budget = budget
        self._held = 0  # bytes of _pending counted in the budget
        self.started = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet forming a complete packet."""
        return len(self._pending)

    def discard(self) -> None:
        """Drop the incomplete packet and give its bytes back to the budget (the
        connection is gone)."""
        self._pending.clear()
        self._need = 0
        if self._budget is not None:
            self._budget.held -= self._held
        self._held = 0

    def _over_budget(self, packets: list[Packet]) -> ProtocolError:
        budget = self._budget
        assert budget is not None
        return ProtocolError(
            ErrorCode.ARGUMENT_TOO_LARGE,
            f"partly received packets of all connections would hold over {budget.limit} "
            "bytes", packets)

    def feed(self, data: bytes) -> list[Packet]:  # noqa: C901 - one hot loop, kept inline for speed
        """Append ``data`` and return every packet now complete, in order.

        Raises:
            ProtocolError: the stream cannot be framed any more (bad magic, unknown
                packet type, oversized body or text line). Packets parsed before the
                fault are in ``exc.packets``.
        """
        pending = self._pending
        if pending:
            pending += data
            budget = self._budget
            if len(pending) < self._need:
                if budget is not None:
                    budget.held += len(data)
                    self._held += len(data)
                    if budget.held > budget.limit:
                        raise self._over_budget([])
                return []
            data = bytes(pending)
            pending.clear()
            if budget is not None:
                budget.held -= self._held
                self._held = 0
        # Native 64-bit indices: mypyc then indexes bytes without tagged-int arithmetic
        # (the per-byte separator scan in _split_fields cost ~25 instructions a byte with
        # int indices).
        pos: i64 = 0
        end: i64 = len(data)
        size: i64
        stop: i64
        start: i64
        out: list[Packet] = []
        arities = _ARITIES
        try:
            while pos < end:
                if data[pos]:
                    if not self._allow_text:
                        raise ProtocolError(ErrorCode.INVALID_MAGIC, "expected a binary packet")
                    nl = data.find(b"\n", pos)
                    if nl < 0:
                        if end - pos > MAX_TEXT_LINE:
                            raise ProtocolError(ErrorCode.ARGUMENT_TOO_LARGE, "text line too long")
                        self._need = end - pos + 1
                        break
                    line = data[pos:nl]
                    if line.endswith(b"\r"):
                        line = line[:-1]
                    out.append((_TEXT, [line]))
                    pos = nl + 1
                    continue
                if end - pos < HEADER_SIZE:
                    self._need = HEADER_SIZE
                    break
                # The header read byte by byte: mypyc compiles bytes indexing to C,
                # where struct.unpack_from was a Python-level call and a tuple per packet.
                # Byte 0 is NUL (checked above); "\0REQ" and "\0RES" differ in byte 3.
                if data[pos + 1] != 0x52 or data[pos + 2] != 0x45:  # "RE"
                    raise ProtocolError(ErrorCode.INVALID_MAGIC, "bad packet magic")
                # Each byte converted to i64 before shifting: shifts and ors of i64 are
                # C operators, where those of int are calls with overflow checks.
                b0: i64 = data[pos + 8]
                b1: i64 = data[pos + 9]
                b2: i64 = data[pos + 10]
                b3: i64 = data[pos + 11]
                size = (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
                kind = data[pos + 3]
                if kind != self._expect_kind:
                    if kind != self._other_kind:
                        raise ProtocolError(ErrorCode.INVALID_MAGIC, "bad packet magic")
                    if self._expect != REQ:
                        raise ProtocolError(ErrorCode.INVALID_MAGIC, "Response magic expected")
                    # A response packet sent to the server is well framed: gearmand answers
                    # ERROR INVALID_MAGIC and keeps the connection, so the packet is
                    # skipped and reported as WRONG_MAGIC for the dispatcher to answer.
                    if size > self._max:
                        raise ProtocolError(ErrorCode.ARGUMENT_TOO_LARGE,
                                            f"packet body of {size} bytes exceeds the limit")
                    stop = pos + HEADER_SIZE + size
                    if stop > end:
                        self._need = stop - pos
                        break
                    out.append((WRONG_MAGIC, []))
                    pos = stop
                    continue
                ptype = data[pos + 7]
                if data[pos + 4] or data[pos + 5] or data[pos + 6] or ptype > MAX_PACKET_TYPE:
                    arity = -1
                else:
                    arity = arities[ptype]
                if arity < 0:
                    ptype = int.from_bytes(data[pos + 4 : pos + 8], "big")
                    raise ProtocolError(
                        ErrorCode.INVALID_COMMAND, f"unknown packet type {ptype}"
                    )
                if size > self._max:
                    raise ProtocolError(
                        ErrorCode.ARGUMENT_TOO_LARGE,
                        f"packet body of {size} bytes exceeds the limit of {self._max}",
                    )
                stop = pos + HEADER_SIZE + size
                if stop > end:
                    self._need = stop - pos
                    break
                start = pos + HEADER_SIZE
                if arity == 0:
                    out.append((ptype, []))
                elif arity == 1:
                    out.append((ptype, [data[start:stop]]))
                else:
                    out.append((ptype, _split_fields(data, start, stop, arity)))
                pos = stop
        except ProtocolError as exc:
            exc.packets = out
            self._need = 0  # discard: the stream is unusable from here on
            raise
        if pos < end:
            pending += data[pos:] if pos else data
            self.started += 1
            budget = self._budget
            if budget is not None:
                budget.held += end - pos
                self._held = end - pos
                if budget.held > budget.limit:
                    raise self._over_budget(out)
        return out
