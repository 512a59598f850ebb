"""A small blocking Gearman connection over the project's codec.

The durability tests need exact control of what is on the wire (pipelined submissions,
WORK_COMPLETE followed by GRAB in one write, raw ERROR packets), which a full client
library hides, so they speak the protocol directly on real sockets.
"""

from __future__ import annotations

import socket
from collections import deque

from gearshift.protocol import RES, PacketReader, PacketType, encode_request

P = PacketType

#: One received packet: its type number and its NUL-separated fields.
Reply = tuple[int, list[bytes]]


class Link:
    """One client or worker connection; ``request`` sends a packet and reads one reply."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = PacketReader(expect=RES, allow_text=False)
        self.queue: deque[Reply] = deque()

    def send(self, ptype: int, *fields: bytes) -> None:
        self.sock.sendall(encode_request(ptype, *fields))

    def send_raw(self, data: bytes) -> None:
        """Send several pre-encoded packets in one write (pipelining)."""
        self.sock.sendall(data)

    def read(self) -> Reply:
        """The next packet; raises ConnectionError when the server closed the socket."""
        while not self.queue:
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("server closed the connection")
            self.queue.extend((int(t), list(f)) for t, f in self.reader.feed(data))
        return self.queue.popleft()

    def request(self, ptype: int, *fields: bytes) -> Reply:
        self.send(ptype, *fields)
        return self.read()

    def submit(self, ptype: int, *fields: bytes) -> bytes:
        """Submit a job and return its handle; raises AssertionError on any other reply."""
        kind, reply = self.request(ptype, *fields)
        assert kind == P.JOB_CREATED, f"expected JOB_CREATED, got {P(kind).name} {reply!r}"
        return reply[0]

    def grab(self, ptype: int = P.GRAB_JOB_UNIQ) -> list[bytes] | None:
        """One GRAB; the assignment's fields, or None on NO_JOB."""
        kind, fields = self.request(ptype)
        while kind == P.NOOP:
            kind, fields = self.read()
        if kind == P.NO_JOB:
            return None
        assert kind in (P.JOB_ASSIGN, P.JOB_ASSIGN_UNIQ, P.JOB_ASSIGN_ALL), \
            f"expected a job assignment, got {P(kind).name} {fields!r}"
        return fields

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def admin(host: str, port: int, command: str) -> list[str]:
    """One admin text command; its lines up to the ``.`` terminator (or the single OK line)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(command.encode() + b"\n")
        buf = b""
        while not (buf.endswith(b"\n.\n") or buf == b".\n"
                   or (buf.startswith((b"OK", b"ERR")) and buf.endswith(b"\n"))):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
    lines = (line.rstrip("\r") for line in buf.decode().split("\n"))
    return [line for line in lines if line and line != "."]
