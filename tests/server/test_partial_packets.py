"""Bounds on partly received packets, over real sockets: ``--packet-timeout`` (a started
packet must be finished in time) and ``--partial-packets-max`` (all connections together
hold at most that many bytes of incomplete packets)."""

from __future__ import annotations

import contextlib
import time

from gearshift.protocol import REQ, ErrorCode, PacketReader, PartialBudget, header
from gearshift.testing import GearshiftServer

from ._wire import P, Wire


def _start_echo(conn: Wire, body_size: int, sent: int) -> None:
    """Declare an ECHO_REQ of ``body_size`` bytes and send only ``sent`` of them."""
    conn.send_raw(header(P.ECHO_REQ, body_size, magic=REQ) + b"x" * sent)


def _closed_after_error(conn: Wire, code: bytes) -> bytes:
    """The ERROR the server sent before closing ``conn`` (its message)."""
    ptype, fields = conn.recv()
    assert (ptype, fields[0]) == (P.ERROR, code), fields
    conn.sock.settimeout(5.0)
    # A reset (our unread bytes were still in its buffer) is a close too.
    with contextlib.suppress(ConnectionResetError):
        assert conn.sock.recv(1) == b"", "the server kept the connection open"
    return fields[1]


def test_a_stalled_packet_is_cut_after_the_packet_timeout() -> None:
    with GearshiftServer(extra_args=["--packet-timeout", "0.5"]) as server:
        stalled, other = Wire.to(server.address), Wire.to(server.address)
        started = time.monotonic()
        _start_echo(stalled, 1 << 20, 1000)
        message = _closed_after_error(stalled, ErrorCode.TIMEOUT)
        assert b"0.5 s" in message
        assert time.monotonic() - started >= 0.5
        assert other.call(P.ECHO_REQ, b"fine") == (P.ECHO_RES, [b"fine"])


def test_packets_that_each_arrive_in_pieces_are_not_cut() -> None:
    """Five packets, each in two writes 0.3 s apart: 1.5 s with something pending, but no
    single packet pending for the 0.5 s timeout."""
    with GearshiftServer(extra_args=["--packet-timeout", "0.5"]) as server:
        conn = Wire.to(server.address)
        for i in range(5):
            body = b"%d" % i + b"y" * 999
            packet = header(P.ECHO_REQ, len(body), magic=REQ) + body
            conn.send_raw(packet[:500])
            time.sleep(0.3)
            conn.send_raw(packet[500:])
            assert conn.recv() == (P.ECHO_RES, [body])


def test_partial_packets_share_one_budget() -> None:
    """Budget 1 MiB: a 700 KiB packet with 600 KiB received fits; a second connection's
    600 KiB would pass the budget, so that connection is closed. The first one finishes,
    which gives its bytes back, and a third may then hold as much."""
    with GearshiftServer(extra_args=["--partial-packets-max", "1MiB"]) as server:
        first, second = Wire.to(server.address), Wire.to(server.address)
        _start_echo(first, 700 << 10, 600 << 10)
        time.sleep(0.5)  # ordering only: the server reads the first connection's bytes first
        _start_echo(second, 700 << 10, 600 << 10)
        assert b"1048576" in _closed_after_error(second, ErrorCode.ARGUMENT_TOO_LARGE)
        first.send_raw(b"x" * (100 << 10))
        ptype, fields = first.recv()
        assert (ptype, len(fields[0])) == (P.ECHO_RES, 700 << 10)
        third = Wire.to(server.address)
        body = b"z" * (900 << 10)
        assert third.call(P.ECHO_REQ, body) == (P.ECHO_RES, [body])


def test_reader_budget_accounting_returns_to_zero() -> None:
    budget = PartialBudget(1 << 20)
    reader = PacketReader(budget=budget)
    packet = header(P.ECHO_REQ, 1000, magic=REQ) + b"a" * 1000
    assert reader.feed(packet[:300]) == []
    assert (budget.held, reader.started) == (300, 1)
    assert reader.feed(packet[300:600]) == []
    assert (budget.held, reader.started) == (600, 1)
    assert reader.feed(packet[600:] + packet[:20]) == [(P.ECHO_REQ, [b"a" * 1000])]
    assert (budget.held, reader.started) == (20, 2)
    reader.discard()
    assert budget.held == 0
