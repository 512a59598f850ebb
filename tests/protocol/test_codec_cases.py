"""Codec cases: each packet <-> its exact bytes, parsed whole, byte by byte and with
trailing data (h11's ``tr()`` discipline), plus the framing limits that protect the server.

The expected bytes are written out by hand from the Gearman PROTOCOL document rather than
produced by ``encode``, so an encoder and decoder that agree on a wrong layout still fail.
"""

from __future__ import annotations

import pytest

from gearshift.protocol import (
    HEADER_SIZE,
    REQ,
    RES,
    ErrorCode,
    Packet,
    PacketReader,
    PacketType,
    ProtocolError,
    encode,
    encode_request,
    header,
)
from gearshift.protocol._admin import ErrReply, parse_err
from gearshift.protocol._codec import WRONG_MAGIC
from gearshift.protocol._spec import MAX_TEXT_LINE

P = PacketType

# (magic, packet type, fields, exact wire bytes)
CASES: list[tuple[bytes, int, list[bytes], bytes]] = [
    (REQ, P.CAN_DO, [b"reverse"], b"\0REQ\0\0\0\x01\0\0\0\x07reverse"),
    (REQ, P.PRE_SLEEP, [], b"\0REQ\0\0\0\x04\0\0\0\0"),
    (REQ, P.GRAB_JOB, [], b"\0REQ\0\0\0\x09\0\0\0\0"),
    (REQ, P.SUBMIT_JOB, [b"f", b"u", b"data"], b"\0REQ\0\0\0\x07\0\0\0\x08f\0u\0data"),
    (REQ, P.SUBMIT_JOB_BG, [b"f", b"", b"a\0b"], b"\0REQ\0\0\0\x12\0\0\0\x06f\0\0a\0b"),
    (REQ, P.SUBMIT_JOB_EPOCH, [b"f", b"u", b"1700000000", b"x"],
     b"\0REQ\0\0\0\x24\0\0\0\x10f\0u\x001700000000\0x"),
    (REQ, P.SUBMIT_REDUCE_JOB, [b"map", b"u", b"red", b"", b"in"],
     b"\0REQ\0\0\0\x25\0\0\0\x0dmap\0u\0red\0\0in"),
    (REQ, P.WORK_COMPLETE, [b"H:x:1", b"done"], b"\0REQ\0\0\0\x0d\0\0\0\x0aH:x:1\0done"),
    (REQ, P.WORK_STATUS, [b"H:x:1", b"1", b"2"], b"\0REQ\0\0\0\x0c\0\0\0\x09H:x:1\x001\x002"),
    (REQ, P.CAN_DO_TIMEOUT, [b"f", b"1500"], b"\0REQ\0\0\0\x17\0\0\0\x06f\x001500"),
    (REQ, P.ECHO_REQ, [b"a\0b\0"], b"\0REQ\0\0\0\x10\0\0\0\x04a\0b\0"),
    (REQ, P.OPTION_REQ, [b"exceptions"], b"\0REQ\0\0\0\x1a\0\0\0\x0aexceptions"),
    (RES, P.NOOP, [], b"\0RES\0\0\0\x06\0\0\0\0"),
    (RES, P.NO_JOB, [], b"\0RES\0\0\0\x0a\0\0\0\0"),
    (RES, P.JOB_CREATED, [b"H:x:1"], b"\0RES\0\0\0\x08\0\0\0\x05H:x:1"),
    (RES, P.JOB_ASSIGN, [b"H:x:1", b"f", b""], b"\0RES\0\0\0\x0b\0\0\0\x08H:x:1\0f\0"),
    (RES, P.JOB_ASSIGN_UNIQ, [b"H", b"f", b"u", b"d"], b"\0RES\0\0\0\x1f\0\0\0\x07H\0f\0u\0d"),
    (RES, P.JOB_ASSIGN_ALL, [b"H", b"f", b"u", b"r", b"d"],
     b"\0RES\0\0\0\x28\0\0\0\x09H\0f\0u\0r\0d"),
    (RES, P.STATUS_RES, [b"H", b"1", b"0", b"3", b"4"],
     b"\0RES\0\0\0\x14\0\0\0\x09H\x001\x000\x003\x004"),
    (RES, P.STATUS_RES_UNIQUE, [b"u", b"1", b"1", b"0", b"0", b"2"],
     b"\0RES\0\0\0\x2a\0\0\0\x0bu\x001\x001\x000\x000\x002"),
    (RES, P.ERROR, [b"QUEUE_ERROR", b"full"], b"\0RES\0\0\0\x13\0\0\0\x10QUEUE_ERROR\0full"),
    (RES, P.WORK_FAIL, [b"H\0"], b"\0RES\0\0\0\x0e\0\0\0\x02H\0"),
]

IDS = [f"{P(c[1]).name}-{c[0][1:].decode()}" for c in CASES]


def _reader(magic: bytes) -> PacketReader:
    return PacketReader(expect=magic, allow_text=magic == REQ)


@pytest.mark.parametrize(("magic", "ptype", "fields", "wire"), CASES, ids=IDS)
def test_encode_matches_wire(magic: bytes, ptype: int, fields: list[bytes], wire: bytes) -> None:
    assert encode(ptype, *fields, magic=magic) == wire
    if magic == REQ:
        assert encode_request(ptype, *fields) == wire
    assert header(ptype, len(wire) - HEADER_SIZE, magic) == wire[:HEADER_SIZE]


@pytest.mark.parametrize(("magic", "ptype", "fields", "wire"), CASES, ids=IDS)
def test_parse_whole(magic: bytes, ptype: int, fields: list[bytes], wire: bytes) -> None:
    reader = _reader(magic)
    assert reader.feed(wire) == [(ptype, fields)]
    assert reader.buffered == 0


@pytest.mark.parametrize(("magic", "ptype", "fields", "wire"), CASES, ids=IDS)
def test_parse_byte_by_byte(magic: bytes, ptype: int, fields: list[bytes], wire: bytes) -> None:
    reader = _reader(magic)
    got: list[Packet] = []
    for i in range(len(wire)):
        out = reader.feed(wire[i : i + 1])
        if i < len(wire) - 1:
            assert out == [], f"packet emitted early at byte {i}"
        got += out
    assert got == [(ptype, fields)]
    assert reader.buffered == 0


@pytest.mark.parametrize(("magic", "ptype", "fields", "wire"), CASES, ids=IDS)
def test_parse_with_trailing_data(magic: bytes, ptype: int, fields: list[bytes],
                                  wire: bytes) -> None:
    # The trailing bytes are the start of another packet: kept, not parsed, not lost.
    trailing = wire[:7]
    reader = _reader(magic)
    assert reader.feed(wire + trailing) == [(ptype, fields)]
    assert reader.buffered == len(trailing)
    assert reader.feed(wire[7:]) == [(ptype, fields)]
    assert reader.buffered == 0


def test_many_packets_in_one_feed_keep_order() -> None:
    wires = [c[3] for c in CASES if c[0] == REQ]
    expected = [(c[1], c[2]) for c in CASES if c[0] == REQ]
    assert PacketReader().feed(b"".join(wires)) == expected


def test_text_lines_interleave_with_binary() -> None:
    stream = b"status\r\n" + encode_request(P.ECHO_REQ, b"x") + b"workers\n"
    reader = PacketReader()
    assert reader.feed(stream) == [
        (P.TEXT, [b"status"]), (P.ECHO_REQ, [b"x"]), (P.TEXT, [b"workers"]),
    ]
    # Split inside the line: nothing until the newline arrives.
    assert reader.feed(b"show jo") == []
    assert reader.feed(b"bs\r\n") == [(P.TEXT, [b"show jobs"])]


def test_short_body_yields_fewer_fields_for_the_broker_to_reject() -> None:
    # SUBMIT_JOB needs three fields; a body with no NUL splits into one. The codec frames
    # it (the length is right); judging the field count is the dispatcher's job.
    assert PacketReader().feed(encode_request(P.SUBMIT_JOB, b"only-one")) == [
        (P.SUBMIT_JOB, [b"only-one"]),
    ]


# ---------------------------------------------------------------------- limits


def test_oversize_body_rejected_from_the_header_alone() -> None:
    reader = PacketReader(max_packet_size=1024)
    with pytest.raises(ProtocolError) as info:
        reader.feed(header(P.SUBMIT_JOB, 1025, REQ))  # no body bytes sent at all
    assert info.value.code == ErrorCode.ARGUMENT_TOO_LARGE
    assert "1025" in info.value.message
    assert reader.buffered == 0


def test_body_at_the_limit_is_accepted() -> None:
    reader = PacketReader(max_packet_size=1024)
    wire = encode_request(P.ECHO_REQ, b"z" * 1024)
    assert reader.feed(wire) == [(P.ECHO_REQ, [b"z" * 1024])]


def test_huge_declared_body_buffers_nothing_beyond_what_was_sent() -> None:
    # Default limit (64 MiB): a 60 MB declaration is legal, but only received bytes are held.
    reader = PacketReader()
    assert reader.feed(header(P.ECHO_REQ, 60_000_000, REQ) + b"a" * 1000) == []
    assert reader.buffered == HEADER_SIZE + 1000


@pytest.mark.parametrize("magic", [b"\0XYZ", b"\0req", b"\0\0\0\0"])
def test_bad_magic(magic: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        PacketReader().feed(magic + b"\0\0\0\x10\0\0\0\0")
    assert info.value.code == ErrorCode.INVALID_MAGIC


def test_response_magic_sent_to_a_server() -> None:
    # Well framed, so the stream survives: gearmand answers ERROR and keeps serving.
    reader = PacketReader(expect=REQ)
    data = encode(P.ECHO_REQ, b"x", magic=RES) + encode_request(P.ECHO_REQ, b"y")
    assert reader.feed(data) == [(WRONG_MAGIC, []), (P.ECHO_REQ, [b"y"])]


def test_request_magic_sent_to_a_client() -> None:
    with pytest.raises(ProtocolError) as info:
        PacketReader(expect=RES, allow_text=False).feed(encode_request(P.NOOP))
    assert info.value.code == ErrorCode.INVALID_MAGIC
    assert info.value.message == "Response magic expected"


@pytest.mark.parametrize("ptype", [0, 43, 999, 2**32 - 1])
def test_unknown_packet_type(ptype: int) -> None:
    with pytest.raises(ProtocolError) as info:
        PacketReader().feed(REQ + ptype.to_bytes(4, "big") + b"\0\0\0\0")
    assert info.value.code == ErrorCode.INVALID_COMMAND
    assert str(ptype) in info.value.message


def test_text_refused_when_not_allowed() -> None:
    with pytest.raises(ProtocolError) as info:
        PacketReader(expect=RES, allow_text=False).feed(b"OK\r\n")
    assert info.value.code == ErrorCode.INVALID_MAGIC


def test_long_text_line_without_newline_is_rejected() -> None:
    reader = PacketReader()
    chunk = b"x" * 4096
    with pytest.raises(ProtocolError) as info:  # noqa: PT012 - the raise comes from one of the feeds
        for _ in range(MAX_TEXT_LINE // len(chunk) + 2):
            reader.feed(chunk)
    assert info.value.code == ErrorCode.ARGUMENT_TOO_LARGE
    assert reader.buffered <= MAX_TEXT_LINE + len(chunk)


def test_text_line_just_under_the_limit_is_accepted() -> None:
    line = b"y" * (MAX_TEXT_LINE - 1)
    assert PacketReader().feed(line + b"\n") == [(P.TEXT, [line])]


def test_error_carries_the_packets_before_the_fault() -> None:
    good = encode_request(P.ECHO_REQ, b"1") + b"version\n"
    with pytest.raises(ProtocolError) as info:
        PacketReader().feed(good + b"\0BAD" + b"\0" * 8)
    assert info.value.packets == [(P.ECHO_REQ, [b"1"]), (P.TEXT, [b"version"])]


@pytest.mark.parametrize(("line", "code", "text"), [
    (b"ERR UNKNOWN_JOB", "UNKNOWN_JOB", ""),
    (b"ERR INVALID_ARGUMENTS An+incomplete+set", "INVALID_ARGUMENTS", "An incomplete set"),
    (b"ERR there are still connected workers or executing clients", "",
     "there are still connected workers or executing clients"),
    (b"ERR function not found", "", "function not found"),
])
def test_admin_err_lines_with_and_without_a_code(line: bytes, code: str, text: str) -> None:
    assert parse_err(line) == ErrReply(code, text)
