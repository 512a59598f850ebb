"""Server->client packets as the broker builds them: headers, sizes, ERROR replies.

Kept apart from the dispatcher so every broker module builds replies the same way.
Compiled with the rest of the broker (setup.py): the header prefixes are bound once and
the body size of almost every reply comes from a table, because an enum attribute, a
``struct.pack`` or an ``int.to_bytes`` per reply were measurable (docs/architecture.md).
"""

from __future__ import annotations

from typing import Final

from gearshift.broker._numbers import decimal
from gearshift.protocol._spec import RES, PacketType

P = PacketType


def _prefix(ptype: int) -> bytes:
    """The first 8 header bytes of a server->client packet: magic and type."""
    return RES + int(ptype).to_bytes(4, "big")


# Header prefixes of the replies sent for every job, bound once: the size follows as
# ``be32(len(body))`` (an enum attribute or a struct.pack call here cost a Python-level
# lookup and call per reply).
JOB_CREATED_HEAD: Final = _prefix(P.JOB_CREATED)
JOB_ASSIGN_HEAD: Final = _prefix(P.JOB_ASSIGN)
WORK_COMPLETE_HEAD: Final = _prefix(P.WORK_COMPLETE)
_ERROR: Final = int(P.ERROR)

NOOP_PACKET: Final = _prefix(P.NOOP) + bytes(4)
NO_JOB_PACKET: Final = _prefix(P.NO_JOB) + bytes(4)

#: Body sizes below this are encoded from a table built at import (~360 KiB measured).
SIZE_TABLE_LIMIT: Final = 8192
_SIZE_TABLE: Final = tuple(n.to_bytes(4, "big") for n in range(SIZE_TABLE_LIMIT))


def be32(size: int) -> bytes:
    """``size.to_bytes(4, "big")``, the body length of a reply header. Compiled,
    ``to_bytes`` builds a Python int and calls into CPython's converter (~240
    instructions per reply, three replies per sync job: callgrind, dispatch_bench); the
    sizes of almost every reply (handles, names, small payloads) come from the table."""
    if size < SIZE_TABLE_LIMIT:
        return _SIZE_TABLE[size]
    return size.to_bytes(4, "big")


def packet(ptype: int, *fields: bytes) -> bytes:
    """Encode one server->client packet."""
    body = b"\0".join(fields)
    return RES + ptype.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body


def created_packet(handle: bytes) -> bytes:
    """JOB_CREATED for ``handle``. One %-format is one allocation when compiled (mypyc
    builds it in C); each ``+`` was another."""
    return b"%s%s%s" % (JOB_CREATED_HEAD, be32(len(handle)), handle)


def created_for(prefix: bytes, seq: int) -> bytes:
    """JOB_CREATED for the handle ``prefix`` + ``seq``, without building the handle
    first (a background job's, which nothing else needs yet)."""
    high, middle, low = decimal(seq)
    return b"%s%s%s%s%s%s" % (JOB_CREATED_HEAD,
                              be32(len(prefix) + len(high) + len(middle) + len(low)),
                              prefix, high, middle, low)


def error_packet(code: bytes, text: str) -> bytes:
    return packet(_ERROR, code, text.encode())
