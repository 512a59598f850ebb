"""A read full of pipelined admin commands is answered a few replies at a time, as the
peer takes them, not all into memory at once (issue 15: 3,000 ``show jobs`` with 20k
queued jobs took gearshift to 1.96 GB)."""

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
