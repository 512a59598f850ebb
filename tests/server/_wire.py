"""A raw-socket Gearman peer for end-to-end tests: packets go out through the project's
codec and replies are read with explicit deadlines, so a missing reply fails the test
with a message instead of hanging it."""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Final

from gearshift.protocol import RES, Packet, PacketReader, PacketType, encode_request

P = PacketType

#: Longest a reply that should come may take (generous: two shared cores).
REPLY_TIMEOUT: Final = 10.0


class Wire:
    """One TCP connection speaking binary Gearman (and admin text when asked)."""

    def __init__(self, host: str, port: int, timeout: float = REPLY_TIMEOUT,
                 tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:  # a TLS port (serve --ssl): handshake before anything else
            self.sock = tls.wrap_socket(self.sock, server_hostname=host)
        self.timeout = timeout
        self.reader = PacketReader(expect=RES, allow_text=False)
        self.pending: list[Packet] = []

    @classmethod
    def to(cls, address: str, tls: ssl.SSLContext | None = None) -> Wire:
        host, _, port = address.rpartition(":")
        return cls(host.strip("[]"), int(port), tls=tls)

    def send(self, ptype: int, *fields: bytes) -> None:
        self.sock.sendall(encode_request(ptype, *fields))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> Packet:
        """The next binary packet; AssertionError if none arrives in time."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.pending:
            left = deadline - time.monotonic()
            assert left > 0, "no reply within the deadline"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert data, "connection closed while a reply was expected"
            self.pending += self.reader.feed(data)
        return self.pending.pop(0)

    def call(self, ptype: int, *fields: bytes) -> Packet:
        self.send(ptype, *fields)
        return self.recv()

    def silent(self, seconds: float = 0.3) -> bool:
        """True if nothing arrives for ``seconds`` (and the connection stays open)."""
        if self.pending:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        self.pending += self.reader.feed(data)
        return False

    def admin(self, line: bytes, end: bytes | None = None) -> bytes:
        """Send a text command and read until its terminator (``.\\n`` for lists)."""
        self.sock.sendall(line + b"\n")
        buf = b""
        deadline = time.monotonic() + self.timeout
        while True:
            if end is not None and buf.endswith(end):
                return buf
            if end is None and (buf.endswith(b".\n") or (buf.startswith((b"OK", b"ERR"))
                                and buf.endswith(b"\n"))):
                return buf
            left = deadline - time.monotonic()
            assert left > 0, f"admin reply incomplete: {buf!r}"
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            assert chunk, f"connection closed mid-reply: {buf!r}"
            buf += chunk

    def closed_by_peer(self, timeout: float | None = None) -> bytes:
        """Wait for the server to close; return whatever it sent first. Fails on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        received = b""
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"server kept the connection open (got {received!r})"
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                return received
            if not data:
                return received
            received += data

    def close(self) -> None:
        self.sock.close()


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def round_trip(address: str, function: bytes = b"echo", payload: bytes = b"ping",
               tls: ssl.SSLContext | None = None) -> None:
    """A full client -> server -> worker -> client job on fresh connections."""
    worker, client = Wire.to(address, tls), Wire.to(address, tls)
    try:
        worker.send(P.CAN_DO, function)
        (ptype, fields) = client.call(P.SUBMIT_JOB, function, b"", payload)
        assert ptype == P.JOB_CREATED, (ptype, fields)
        handle = fields[0]
        assert worker.call(P.GRAB_JOB) == (P.JOB_ASSIGN, [handle, function, payload])
        worker.send(P.WORK_COMPLETE, handle, payload[::-1])
        assert client.recv() == (P.WORK_COMPLETE, [handle, payload[::-1]])
    finally:
        worker.close()
        client.close()


def proc_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
