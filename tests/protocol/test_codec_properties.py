"""Property tests for the codec: round trip for every packet type, chunking invariance,
and "arbitrary bytes give packets or ProtocolError, never another exception".
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gearshift.protocol import (
    ARITY,
    REQ,
    RES,
    ErrorCode,
    Packet,
    PacketReader,
    PacketType,
    ProtocolError,
    encode,
)
from gearshift.protocol._codec import WRONG_MAGIC
from gearshift.protocol._spec import MAX_TEXT_LINE

_NO_NUL = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))


@st.composite
def packets(draw: st.DrawFn) -> Packet:
    """Any real packet type with fields that survive framing: every field but the last is
    NUL-free (NUL is the separator); the last may hold NULs (it is the data blob)."""
    ptype = draw(st.sampled_from(sorted(ARITY)))
    arity = ARITY[ptype]
    if arity == 0:
        return (ptype, [])
    fields = [draw(_NO_NUL) for _ in range(arity - 1)]
    fields.append(draw(st.binary(max_size=200)))
    return (ptype, fields)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, start = [], 0
    for p in points:
        chunks.append(data[start:p])
        start = p
    chunks.append(data[start:])
    return chunks


@given(packets(), st.sampled_from([REQ, RES]))
def test_round_trip_every_packet_type(pkt: Packet, magic: bytes) -> None:
    ptype, fields = pkt
    reader = PacketReader(expect=magic, allow_text=False)
    assert reader.feed(encode(ptype, *fields, magic=magic)) == [(ptype, fields)]
    assert reader.buffered == 0


@given(st.lists(packets(), max_size=8), st.lists(st.integers(min_value=0), max_size=20))
def test_chunking_does_not_change_the_packets(pkts: list[Packet], cuts: list[int]) -> None:
    stream = b"".join(encode(t, *f, magic=REQ) for t, f in pkts)
    reader = PacketReader()
    got: list[Packet] = []
    for chunk in _split(stream, cuts):
        got += reader.feed(chunk)
    assert got == pkts
    assert reader.buffered == 0


_HEADERISH = st.builds(
    lambda magic, ptype, size: magic + ptype.to_bytes(4, "big") + size.to_bytes(4, "big"),
    st.sampled_from([REQ, RES, b"\0XYZ", b"GET "]),
    st.integers(min_value=0, max_value=50),
    st.integers(min_value=0, max_value=300),
)
_NOISE = st.lists(
    st.one_of(st.binary(max_size=30), _HEADERISH, st.just(b"status\n"),
              packets().map(lambda p: encode(p[0], *p[1], magic=REQ))),
    max_size=10,
).map(b"".join)


@settings(max_examples=300)
@given(_NOISE, st.lists(st.integers(min_value=0), max_size=10), st.booleans())
def test_arbitrary_bytes_give_packets_or_protocol_error(data: bytes, cuts: list[int],
                                                        allow_text: bool) -> None:
    reader = PacketReader(max_packet_size=256, allow_text=allow_text)
    error: ProtocolError | None = None
    try:
        for chunk in _split(data, cuts):
            for ptype, fields in reader.feed(chunk):
                assert WRONG_MAGIC <= ptype <= 42
                assert all(isinstance(f, bytes) for f in fields)
                if ptype == WRONG_MAGIC:  # a well-framed \0RES packet, reported not parsed
                    assert fields == []
                elif ptype == PacketType.TEXT:
                    assert allow_text
                    assert len(fields) == 1
                    assert b"\n" not in fields[0]
                else:
                    assert len(fields) <= ARITY[ptype]
            # At most one incomplete packet or text line is held, within the limits.
            assert reader.buffered <= max(12 + 256, MAX_TEXT_LINE + len(chunk))
    except ProtocolError as exc:
        error = exc
    if error is not None:
        assert error.code in (ErrorCode.INVALID_MAGIC, ErrorCode.INVALID_COMMAND,
                              ErrorCode.ARGUMENT_TOO_LARGE)
        assert error.message


@settings(max_examples=300)
@given(st.sampled_from(sorted(p for p, a in ARITY.items() if a >= 2)),
       st.lists(st.sampled_from([b"\0", b"a", b"bc", b"\0\0", b"xyz"]), max_size=12))
def test_fields_are_split_like_bytes_split(ptype: int, pieces: list[bytes]) -> None:
    """Any body, with any number of NULs (too few included), parses into the fields
    ``body.split(b"\\0", arity - 1)`` gives: the codec finds separators by index."""
    body = b"".join(pieces)
    raw = REQ + ptype.to_bytes(4, "big") + len(body).to_bytes(4, "big") + body
    assert PacketReader().feed(raw) == [(ptype, body.split(b"\0", ARITY[ptype] - 1))]
