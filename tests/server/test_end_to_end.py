"""End to end over real sockets: a ``gearshift serve`` child process on a free loopback
port, driven by raw-socket peers. Covers the full job round trip and that bad input from
one peer gets that peer an ERROR or a close while everyone else keeps being served."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from gearshift.protocol import REQ, RES, ErrorCode, PacketReader, encode, header
from gearshift.testing import GearshiftServer

from ._wire import REPLY_TIMEOUT, P, Wire, round_trip

MAX_PACKET = 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[GearshiftServer]:
    with GearshiftServer(extra_args=["--max-packet-size", str(MAX_PACKET)]) as srv:
        yield srv


def test_client_worker_round_trip_with_progress(server: GearshiftServer) -> None:
    worker, client = Wire.to(server.address), Wire.to(server.address)
    worker.send(P.CAN_DO, b"reverse")
    worker.send(P.PRE_SLEEP)
    assert worker.silent(0.1)
    ptype, [handle] = client.call(P.SUBMIT_JOB_HIGH, b"reverse", b"", b"hello")
    assert ptype == P.JOB_CREATED
    assert worker.recv() == (P.NOOP, [])
    assert worker.call(P.GRAB_JOB_UNIQ) == (P.JOB_ASSIGN_UNIQ, [handle, b"reverse", b"", b"hello"])
    worker.send(P.WORK_STATUS, handle, b"1", b"2")
    worker.send(P.WORK_DATA, handle, b"ol")
    assert client.recv() == (P.WORK_STATUS, [handle, b"1", b"2"])
    assert client.recv() == (P.WORK_DATA, [handle, b"ol"])
    assert client.call(P.GET_STATUS, handle) == (P.STATUS_RES, [handle, b"1", b"1", b"1", b"2"])
    worker.send(P.WORK_COMPLETE, handle, b"olleh")
    assert client.recv() == (P.WORK_COMPLETE, [handle, b"olleh"])
    assert client.call(P.GET_STATUS, handle) == (P.STATUS_RES, [handle, b"0", b"0", b"0", b"0"])
    assert worker.call(P.GRAB_JOB) == (P.NO_JOB, [])
    status = Wire.to(server.address).admin(b"status")  # admin text on the same port
    assert b"reverse\t0\t0\t1\n" in status
    assert status.endswith(b".\n")
    worker.close()
    client.close()


def test_background_job_and_echo(server: GearshiftServer) -> None:
    client = Wire.to(server.address)
    assert client.call(P.ECHO_REQ, b"a\0b") == (P.ECHO_RES, [b"a\0b"])
    ptype, [handle] = client.call(P.SUBMIT_JOB_LOW_BG, b"bgfunc", b"uniq-1", b"data")
    assert ptype == P.JOB_CREATED
    client.close()  # a background job outlives its submitter
    worker = Wire.to(server.address)
    worker.send(P.CAN_DO, b"bgfunc")
    assert worker.call(P.GRAB_JOB_ALL) == (P.JOB_ASSIGN_UNIQ, [handle, b"bgfunc", b"uniq-1",
                                                              b"data"])
    worker.send(P.WORK_COMPLETE, handle, b"")
    worker.close()


def _packet_with_body(ptype: int, body: bytes) -> bytes:
    return header(ptype, len(body), REQ) + body


# (name, bytes to send, ERROR code expected before the close)
FATAL = [
    ("bad magic", b"\0XYZ" + b"\0\0\0\x01\0\0\0\x01f", ErrorCode.INVALID_MAGIC),
    ("unknown type 43", REQ + b"\0\0\0\x2b\0\0\0\0", ErrorCode.INVALID_COMMAND),
    ("unknown type 0", REQ + b"\0\0\0\0\0\0\0\0", ErrorCode.INVALID_COMMAND),
    ("over max packet size", header(P.SUBMIT_JOB, MAX_PACKET + 1, REQ),
     ErrorCode.ARGUMENT_TOO_LARGE),
]


@pytest.mark.parametrize(("name", "data", "code"), FATAL, ids=[f[0] for f in FATAL])
def test_unframeable_input_gets_error_then_close(server: GearshiftServer, name: str,
                                                 data: bytes, code: bytes) -> None:
    bystander = Wire.to(server.address)
    assert bystander.call(P.ECHO_REQ, b"before") == (P.ECHO_RES, [b"before"])
    bad = Wire.to(server.address)
    bad.send_raw(data)
    sent_back = bad.closed_by_peer()
    [(ptype, fields)] = PacketReader(expect=RES, allow_text=False).feed(sent_back)
    assert ptype == P.ERROR
    assert fields[0] == code
    bad.close()
    assert bystander.call(P.ECHO_REQ, b"after") == (P.ECHO_RES, [b"after"])
    round_trip(server.address)
    bystander.close()


def test_response_magic_gets_an_error_and_the_connection_stays(server: GearshiftServer) -> None:
    # gearmand answers a well-framed \0RES packet with ERROR and keeps serving; so do we.
    conn = Wire.to(server.address)
    conn.send_raw(encode(P.ECHO_REQ, b"wrong way", magic=RES))
    assert conn.recv() == (P.ERROR, [ErrorCode.INVALID_MAGIC, b"Request magic expected"])
    assert conn.call(P.ECHO_REQ, b"right way") == (P.ECHO_RES, [b"right way"])
    conn.close()


def _closed_without_reply(conn: Wire) -> bool:
    """True once the server closes ``conn`` having sent nothing (AssertionError on a
    reply or on no close within the reply deadline)."""
    conn.sock.settimeout(REPLY_TIMEOUT)
    data = conn.sock.recv(65536)
    assert data == b"", f"expected a silent close, got {data!r}"
    return True


def test_wrong_field_count_closes_the_connection_without_a_reply(
        server: GearshiftServer) -> None:
    """gearmand ends such a connection without a word (it reads the next packet's bytes
    as the missing arguments, then fails); we close it at once. Others are unaffected."""
    other = Wire.to(server.address)
    conn = Wire.to(server.address)
    conn.send(P.SUBMIT_JOB, b"only-function")
    assert _closed_without_reply(conn)
    assert other.call(P.ECHO_REQ, b"still open") == (P.ECHO_RES, [b"still open"])
    other.close()
    conn.close()


def test_bare_handle_work_complete_requeues_for_the_next_worker(
        server: GearshiftServer) -> None:
    """Perl's Gearman::Worker sends an empty result as WORK_COMPLETE with the bare
    handle: its connection is dropped, the job goes to the next worker (gearmand too)."""
    client, w1, w2 = (Wire.to(server.address) for _ in range(3))
    ptype, [handle] = client.call(P.SUBMIT_JOB, b"bare", b"", b"x")
    assert ptype == P.JOB_CREATED
    w1.send(P.CAN_DO, b"bare")
    assert w1.call(P.GRAB_JOB)[0] == P.JOB_ASSIGN
    w1.send_raw(REQ + P.WORK_COMPLETE.to_bytes(4, "big") + len(handle).to_bytes(4, "big")
                + handle)
    assert _closed_without_reply(w1)
    w2.send(P.CAN_DO, b"bare")
    assert w2.call(P.GRAB_JOB) == (P.JOB_ASSIGN, [handle, b"bare", b"x"])
    w2.send(P.WORK_COMPLETE, handle, b"done")
    assert client.recv() == (P.WORK_COMPLETE, [handle, b"done"])
    for conn in (client, w1, w2):
        conn.close()


def test_rejected_packet_types_get_invalid_command(server: GearshiftServer) -> None:
    conn = Wire.to(server.address)
    assert conn.call(P.ALL_YOURS) == (P.ERROR, [ErrorCode.INVALID_COMMAND, b"Command not expected"])
    # gearmand rejects SUBMIT_JOB_SCHED too; gearshift keeps a schedule, and a day of
    # the month 0 is bad input.
    sched = [b"f", b"", b"0", b"0", b"0", b"0", b"0", b"data"]
    ptype, fields = conn.call(P.SUBMIT_JOB_SCHED, *sched)
    assert (ptype, fields[0]) == (P.ERROR, ErrorCode.INVALID_ARGUMENT)
    assert b"day-of-month" in fields[1]
    assert conn.call(P.ECHO_REQ, b"x") == (P.ECHO_RES, [b"x"])
    conn.close()


def test_half_sent_packet_then_disconnect(server: GearshiftServer) -> None:
    bystander = Wire.to(server.address)
    for cut in (3, 12, 20):
        bad = Wire.to(server.address)
        bad.send_raw(_packet_with_body(P.SUBMIT_JOB, b"f\0\0" + b"z" * 100)[:cut])
        bad.close()
    # The half-submitted job never existed.
    assert b"\nf\t" not in b"\n" + bystander.admin(b"status")
    assert bystander.call(P.ECHO_REQ, b"alive") == (P.ECHO_RES, [b"alive"])
    round_trip(server.address)
    bystander.close()


def test_garbage_text_gets_err_and_the_connection_stays(server: GearshiftServer) -> None:
    conn = Wire.to(server.address)
    assert conn.admin(b"HELO gearmand") == b"ERR UNKNOWN_COMMAND Unknown+server+commandHELO\r\n"
    assert conn.admin(b"\x01\x02\x03 \xff") .startswith(b"ERR UNKNOWN_COMMAND")
    assert conn.admin(b"version").startswith(b"OK ")
    conn.close()


def test_overlong_text_line_is_dropped_without_hurting_others(server: GearshiftServer) -> None:
    bystander = Wire.to(server.address)
    bad = Wire.to(server.address)
    # No newline, far past the text line limit; the server may close on us mid-send.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        bad.send_raw(b"x" * (256 * 1024))
    bad.closed_by_peer()
    bad.close()
    assert bystander.call(P.ECHO_REQ, b"ok") == (P.ECHO_RES, [b"ok"])
    bystander.close()


def test_many_bad_peers_interleaved_with_good_traffic(server: GearshiftServer) -> None:
    good = Wire.to(server.address)
    for i in range(20):
        bad = socket.create_connection((server.host, server.port), timeout=5)
        bad.sendall(FATAL[i % len(FATAL)][1])
        bad.close()
        assert good.call(P.ECHO_REQ, b"%d" % i) == (P.ECHO_RES, [b"%d" % i])
    round_trip(server.address)
    good.close()


def test_closed_connections_leave_no_trace_in_workers(server: GearshiftServer) -> None:
    # After everything above, only this console is listed. Closes are processed
    # asynchronously, so poll (bounded) for the listing to settle.
    conn = Wire.to(server.address)
    deadline = time.monotonic() + 5
    while True:
        workers = conn.admin(b"workers")
        assert workers.endswith(b".\n")
        lines = [line for line in workers.split(b"\n")[:-2] if line]
        if len(lines) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 1, workers
    conn.close()


def _vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not hasattr(socket, "MSG_DONTWAIT"), reason="needs MSG_DONTWAIT")
def test_client_that_never_reads_cannot_grow_the_server(server: GearshiftServer) -> None:
    """A client pipelining ECHO_REQs without reading the replies: once its replies back up,
    the server stops reading its requests (pause_writing -> pause_reading), so the client's
    sends block, the server's memory stays put, others are served, and nothing is lost."""
    payload = b"e" * (256 * 1024)
    request = encode(P.ECHO_REQ, payload, magic=REQ)
    hog = socket.create_connection((server.host, server.port))
    rss_before = _vm_rss_kb(server.pid)
    sent = 0
    blocked_since: float | None = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            sent += hog.send(request[sent % len(request):], socket.MSG_DONTWAIT)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or time.monotonic()
            if time.monotonic() - blocked_since > 1.0:
                break  # the server has stopped reading us
            time.sleep(0.01)
    assert blocked_since is not None, f"sent {sent >> 20} MiB and the server kept reading"
    # Kernel buffers on both sides plus one read of replies: a few MiB, not all of it.
    assert sent < 64 * 1024 * 1024
    assert _vm_rss_kb(server.pid) - rss_before < 48 * 1024
    other = Wire.to(server.address)
    assert other.call(P.ECHO_REQ, b"still here") == (P.ECHO_RES, [b"still here"])
    other.close()
    # Reading the replies resumes the hog: every complete request gets its echo (a last,
    # partly sent request stays incomplete and unanswered).
    hog.settimeout(10)
    reader = PacketReader(expect=RES, allow_text=False)
    complete = sent // len(request)
    echoed = 0
    while echoed < complete:
        data = hog.recv(1 << 20)
        assert data, "server closed the connection"
        for ptype, fields in reader.feed(data):
            assert (ptype, len(fields[0])) == (P.ECHO_RES, len(payload))
            echoed += 1
    hog.close()
