"""Floods from one peer are taken a bounded step at a time, others served between
(issue 15): a read full of pipelined admin commands is answered a few replies at a time
as the peer takes them (3,000 ``show jobs`` with 20k queued jobs took gearshift to
1.96 GB), one long listing is made a piece at a time, a read of many packets is acted
on 512 at a time, and large bodies are read a step per loop iteration."""

from __future__ import annotations

import socket
import time

from gearshift.protocol import REQ, encode
from gearshift.testing import GearshiftServer

from ._wire import P, Wire

JOBS = 2000
LINES = 2000


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _queue_jobs(server: GearshiftServer, count: int) -> None:
    conn = Wire.to(server.address)
    conn.send_raw(b"".join(encode(P.SUBMIT_JOB_BG, b"flood", b"", b"x" * 8, magic=REQ)
                           for _ in range(count)))
    for _ in range(count):
        assert conn.recv()[0] == P.JOB_CREATED
    conn.close()


def test_pipelined_show_jobs_are_answered_as_they_are_read() -> None:
    with GearshiftServer() as server:
        _queue_jobs(server, JOBS)
        admin = socket.create_connection((server.host, server.port))
        admin.sendall(b"show jobs\n")
        one = b""
        while not one.endswith(b"\n.\n"):
            one += admin.recv(1 << 20)
        baseline = _rss_bytes(server.pid)
        # Every reply at once would be LINES x len(one) (~33 MB here).
        admin.sendall(b"show jobs\n" * LINES)
        time.sleep(2.0)  # time enough to build every reply, were it built eagerly
        grown = _rss_bytes(server.pid) - baseline
        expected = LINES * len(one)
        assert grown < 16 << 20, f"server RSS grew {grown >> 20} MiB for unread replies " \
                                 f"(all of them: {expected >> 20} MiB)"
        other = Wire.to(server.address)
        assert other.call(P.ECHO_REQ, b"served") == (P.ECHO_RES, [b"served"])
        # All of them are still answered, in full, once read.
        admin.settimeout(30.0)
        got = 0
        while got < expected:
            chunk = admin.recv(1 << 20)
            assert chunk, f"closed after {got} of {expected} bytes"
            got += len(chunk)
        assert got == expected
        admin.close()


LONG_JOBS = 60_000


def _status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key}")


def _queue_unique_jobs(server: GearshiftServer, count: int) -> list[bytes]:
    """``count`` background jobs, each with its own 64-byte unique key (the longest)."""
    uniques = [b"%064d" % i for i in range(count)]
    conn = Wire.to(server.address)
    for start in range(0, count, 10_000):
        part = uniques[start:start + 10_000]
        conn.send_raw(b"".join(encode(P.SUBMIT_JOB_BG, b"long", u, b"", magic=REQ)
                               for u in part))
        for _ in part:
            assert conn.recv()[0] == P.JOB_CREATED
    conn.close()
    return uniques


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    sock.settimeout(60.0)
    chunks = []
    got = 0
    while got < size:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {got} of {size} bytes"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def test_a_long_listing_is_produced_a_piece_at_a_time() -> None:
    """``show unique jobs`` over 60k jobs (~4 MB of text; built in one piece it took
    ~3x that at its peak: a bytes object per row, the join, the end line): the server's
    peak RSS barely moves while a client reads it, and a client that does not read gets
    a few pieces and holds the server at that, while another client is served."""
    with GearshiftServer() as server:
        uniques = _queue_unique_jobs(server, LONG_JOBS)
        expected = b"".join(u + b"\n" for u in uniques) + b".\n"
        reader = socket.create_connection((server.host, server.port))
        with open(f"/proc/{server.pid}/clear_refs", "w") as fh:
            fh.write("5")  # the peak RSS (VmHWM) starts again from the current RSS
        before = _status_kib(server.pid, "VmRSS")
        reader.sendall(b"show unique jobs\n")
        assert _read_exactly(reader, len(expected)) == expected
        peak = _status_kib(server.pid, "VmHWM") - before
        assert peak * 1024 < len(expected) // 4, \
            f"peak RSS grew {peak} KiB for a {len(expected) >> 10} KiB listing"

        # 20 of them, unread: a few pieces reach the socket buffers, no more is made.
        silent = socket.create_connection((server.host, server.port))
        baseline = _rss_bytes(server.pid)
        silent.sendall(b"show unique jobs\n" * 20)
        other = Wire.to(server.address)
        for i in range(50):  # served throughout
            assert other.call(P.ECHO_REQ, b"%d" % i) == (P.ECHO_RES, [b"%d" % i])
        time.sleep(1.0)
        grown = _rss_bytes(server.pid) - baseline
        # (one listing made whole and left in the transport's buffer: +4.8 MB)
        assert grown < 2 << 20, f"server RSS grew {grown >> 10} KiB for unread listings " \
                                f"({20 * len(expected) >> 20} MiB in all)"
        # Then read: every listing, complete and in order.
        assert _read_exactly(silent, 20 * len(expected)) == expected * 20
        for sock in (reader, silent):
            sock.close()
        other.close()


def test_a_huge_pipelined_read_is_answered_in_full_and_in_order() -> None:
    """30,000 packets in one write (the server acts on BATCH_PACKETS of a read per loop
    iteration, other connections between): every one answered, in order."""
    with GearshiftServer() as server:
        conn = Wire.to(server.address)
        conn.send_raw(b"".join(encode(P.ECHO_REQ, b"%d" % i, magic=REQ) for i in range(30_000)))
        other = Wire.to(server.address)
        assert other.call(P.ECHO_REQ, b"other") == (P.ECHO_RES, [b"other"])
        for i in range(30_000):
            assert conn.recv() == (P.ECHO_RES, [b"%d" % i])
        conn.close()
        other.close()


def test_large_bodies_arrive_whole_while_read_a_step_per_iteration() -> None:
    """Bodies past BIG_BODY_STEP are read once per loop iteration once that much is
    buffered (a fairness rule, not a limit): several 20 MiB echoes sent at once all come
    back intact, and another connection is answered meanwhile."""
    body = bytes(range(256)) * (20 * 4096)  # 20 MiB
    with GearshiftServer() as server:
        senders = [Wire.to(server.address) for _ in range(3)]
        for i, conn in enumerate(senders):
            conn.send_raw(encode(P.ECHO_REQ, bytes([i]) + body, magic=REQ)[:1 << 20])
        other = Wire.to(server.address)
        assert other.call(P.ECHO_REQ, b"between") == (P.ECHO_RES, [b"between"])
        for i, conn in enumerate(senders):
            conn.send_raw(encode(P.ECHO_REQ, bytes([i]) + body, magic=REQ)[1 << 20:])
        for i, conn in enumerate(senders):
            assert conn.recv(timeout=60) == (P.ECHO_RES, [bytes([i]) + body])
            conn.close()
        other.close()
