"""The Gearman packet table: one row per packet type, driving the codec and the dispatcher.

Every body is a list of fields separated by single NUL bytes. Each packet type has a fixed
number of fields (its *arity*); the last field may itself contain NUL bytes (it is either
the opaque data blob or the unterminated final argument -- both split the same way), so a
body splits with ``body.split(b"\\0", arity - 1)``. A split that yields fewer fields is a
malformed packet.

SUBMIT_REDUCE_JOB* carry *four* fields before the data, as libgearman sends them
(the PROTOCOL document says three; see ../shared/reference/gearmand.md section 2.7).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final


class PacketType(IntEnum):
    """Gearman binary packet numbers (both directions share one numbering)."""

    TEXT = 0  # internal marker for an admin text line; never valid on the wire
    CAN_DO = 1
    CANT_DO = 2
    RESET_ABILITIES = 3
    PRE_SLEEP = 4
    UNUSED = 5
    NOOP = 6
    SUBMIT_JOB = 7
    JOB_CREATED = 8
    GRAB_JOB = 9
    NO_JOB = 10
    JOB_ASSIGN = 11
    WORK_STATUS = 12
    WORK_COMPLETE = 13
    WORK_FAIL = 14
    GET_STATUS = 15
    ECHO_REQ = 16
    ECHO_RES = 17
    SUBMIT_JOB_BG = 18
    ERROR = 19
    STATUS_RES = 20
    SUBMIT_JOB_HIGH = 21
    SET_CLIENT_ID = 22
    CAN_DO_TIMEOUT = 23
    ALL_YOURS = 24
    WORK_EXCEPTION = 25
    OPTION_REQ = 26
    OPTION_RES = 27
    WORK_DATA = 28
    WORK_WARNING = 29
    GRAB_JOB_UNIQ = 30
    JOB_ASSIGN_UNIQ = 31
    SUBMIT_JOB_HIGH_BG = 32
    SUBMIT_JOB_LOW = 33
    SUBMIT_JOB_LOW_BG = 34
    SUBMIT_JOB_SCHED = 35
    SUBMIT_JOB_EPOCH = 36
    SUBMIT_REDUCE_JOB = 37
    SUBMIT_REDUCE_JOB_BACKGROUND = 38
    GRAB_JOB_ALL = 39
    JOB_ASSIGN_ALL = 40
    GET_STATUS_UNIQUE = 41
    STATUS_RES_UNIQUE = 42


P = PacketType

#: Number of NUL-separated fields in the body of each packet type.
ARITY: Final[dict[int, int]] = {
    P.CAN_DO: 1,
    P.CANT_DO: 1,
    P.RESET_ABILITIES: 0,
    P.PRE_SLEEP: 0,
    P.UNUSED: 0,
    P.NOOP: 0,
    P.SUBMIT_JOB: 3,
    P.JOB_CREATED: 1,
    P.GRAB_JOB: 0,
    P.NO_JOB: 0,
    P.JOB_ASSIGN: 3,
    P.WORK_STATUS: 3,
    P.WORK_COMPLETE: 2,
    P.WORK_FAIL: 1,
    P.GET_STATUS: 1,
    P.ECHO_REQ: 1,
    P.ECHO_RES: 1,
    P.SUBMIT_JOB_BG: 3,
    P.ERROR: 2,
    P.STATUS_RES: 5,
    P.SUBMIT_JOB_HIGH: 3,
    P.SET_CLIENT_ID: 1,
    P.CAN_DO_TIMEOUT: 2,
    P.ALL_YOURS: 0,
    P.WORK_EXCEPTION: 2,
    P.OPTION_REQ: 1,
    P.OPTION_RES: 1,
    P.WORK_DATA: 2,
    P.WORK_WARNING: 2,
    P.GRAB_JOB_UNIQ: 0,
    P.JOB_ASSIGN_UNIQ: 4,
    P.SUBMIT_JOB_HIGH_BG: 3,
    P.SUBMIT_JOB_LOW: 3,
    P.SUBMIT_JOB_LOW_BG: 3,
    P.SUBMIT_JOB_SCHED: 8,
    P.SUBMIT_JOB_EPOCH: 4,
    P.SUBMIT_REDUCE_JOB: 5,
    P.SUBMIT_REDUCE_JOB_BACKGROUND: 5,
    P.GRAB_JOB_ALL: 0,
    P.JOB_ASSIGN_ALL: 5,
    P.GET_STATUS_UNIQUE: 1,
    P.STATUS_RES_UNIQUE: 6,
}

#: Highest packet number gearmand knows; a header naming a larger one is a protocol error.
MAX_PACKET_TYPE: Final = 42

REQ: Final = b"\0REQ"
RES: Final = b"\0RES"
HEADER_SIZE: Final = 12

#: Largest body the server accepts unless configured otherwise. gearmand has no cap at all
#: (it mallocs whatever the header declares); 64 MiB keeps one hostile header from taking
#: the machine's memory while leaving room for any realistic job payload.
DEFAULT_MAX_PACKET_SIZE: Final = 64 * 1024 * 1024

#: Longest admin text line accepted before the connection is dropped (gearmand: 8 KiB
#: reads; real admin commands are a few dozen bytes).
MAX_TEXT_LINE: Final = 64 * 1024

#: Longest unique key gearmand accepts (it answers ARGUMENT_TOO_LARGE above this).
MAX_UNIQUE_SIZE: Final = 64


class ErrorCode:
    """ERROR packet codes, spelled as gearmand sends them (libgearman names sans prefix)."""

    INVALID_MAGIC: Final = b"INVALID_MAGIC"
    INVALID_COMMAND: Final = b"INVALID_COMMAND"
    ARGUMENT_TOO_LARGE: Final = b"ARGUMENT_TOO_LARGE"
    QUEUE_ERROR: Final = b"QUEUE_ERROR"
    JOB_NOT_FOUND: Final = b"JOB_NOT_FOUND"
    UNKNOWN_OPTION: Final = b"UNKNOWN_OPTION"
    INVALID_ARGUMENT: Final = b"INVALID_ARGUMENT"
    #: gearshift's own: --acl refused the request (gearmand has no rights to refuse by)
    PERMISSION_DENIED: Final = b"PERMISSION_DENIED"
    #: gearshift's: a started packet was not completed within ``--packet-timeout``
    TIMEOUT: Final = b"TIMEOUT"
