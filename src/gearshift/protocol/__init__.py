"""Sans-I/O Gearman wire protocol: packet table, binary codec and admin text protocol."""

from gearshift.protocol._codec import (
    Packet,
    PacketReader,
    PartialBudget,
    ProtocolError,
    encode,
    encode_request,
    header,
)
from gearshift.protocol._spec import (
    ARITY,
    DEFAULT_MAX_PACKET_SIZE,
    HEADER_SIZE,
    MAX_UNIQUE_SIZE,
    REQ,
    RES,
    ErrorCode,
    PacketType,
)

__all__ = [
    "ARITY",
    "DEFAULT_MAX_PACKET_SIZE",
    "HEADER_SIZE",
    "MAX_UNIQUE_SIZE",
    "REQ",
    "RES",
    "ErrorCode",
    "Packet",
    "PacketReader",
    "PacketType",
    "PartialBudget",
    "ProtocolError",
    "encode",
    "encode_request",
    "header",
]
