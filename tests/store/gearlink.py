"""A minimal blocking Gearman client and worker over the project's codec, for the
crash and importer tests (one packet at a time, real sockets, no third-party client)."""

from __future__ import annotations

import socket

from gearshift.protocol import RES, PacketReader, PacketType, encode_request

P = PacketType


class Link:
    """One connection to a server; ``request`` sends a packet and reads one reply."""

    def __init__(self, host: str, port: int, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        # WORK_COMPLETE then GRAB_JOB are two small writes: without this, Nagle plus
        # delayed ACKs add ~40 ms per job.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = PacketReader(expect=RES, allow_text=False)
        self.queue: list[tuple[int, list[bytes]]] = []

    def send(self, ptype: int, *fields: bytes) -> None:
        self.sock.sendall(encode_request(ptype, *fields))

    def read(self) -> tuple[int, list[bytes]]:
        while not self.queue:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("server closed the connection")
            self.queue.extend((int(t), list(f)) for t, f in self.reader.feed(data))
        return self.queue.pop(0)

    def request(self, ptype: int, *fields: bytes) -> tuple[int, list[bytes]]:
        self.send(ptype, *fields)
        return self.read()

    def submit_bg(self, function: bytes, unique: bytes, data: bytes,
                  ptype: int = P.SUBMIT_JOB_BG) -> bytes:
        """Submit a background job; returns its handle (raises on ERROR)."""
        kind, fields = self.request(ptype, function, unique, data)
        if kind != P.JOB_CREATED:
            raise RuntimeError(f"expected JOB_CREATED, got {kind} {fields!r}")
        return fields[0]

    def grab(self) -> tuple[bytes, bytes, bytes, bytes] | None:
        """GRAB_JOB_UNIQ: (handle, function, unique, data), or None on NO_JOB."""
        kind, fields = self.request(P.GRAB_JOB_UNIQ)
        while kind == P.NOOP:
            kind, fields = self.read()
        if kind == P.NO_JOB:
            return None
        if kind != P.JOB_ASSIGN_UNIQ:
            raise RuntimeError(f"expected JOB_ASSIGN_UNIQ, got {kind} {fields!r}")
        handle, function, unique, data = fields
        return handle, function, unique, data

    def close(self) -> None:
        self.sock.close()


def admin(host: str, port: int, command: bytes) -> list[bytes]:
    """Run one admin text command; returns its lines up to the '.' terminator."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(command + b"\n")
        buf = b""
        while not buf.endswith(b".\n") and not buf.startswith(b"OK"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
        return [line for line in buf.split(b"\n") if line and line != b"."]
