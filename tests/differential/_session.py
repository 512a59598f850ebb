"""Scripted raw-socket sessions whose replies are written down as a comparable transcript.

A scenario drives one server through named TCP connections (``c1``, ``w1``, ``admin`` ...)
built on plain sockets and the project's codec, so nothing between the script and the
server can hide a difference. Every packet sent and every reply received becomes one line
of the :class:`Session` transcript. Replies are read *per connection, in script order*,
so a transcript never depends on how the server interleaves writes to different sockets.

Values that legitimately differ between two servers are normalised before they are
written down: job handles become ``H1``, ``H2`` ... in order of first appearance, and
admin output has its file descriptors, IP addresses, pid and version masked. Nothing
else is rewritten; text replies are kept byte for byte (``\\r\\n`` versus ``\\n``).
"""

from __future__ import annotations

import re
import select
import socket
import time
from collections.abc import Callable
from typing import Final

from gearshift.protocol import Packet, PacketReader, PacketType, ProtocolError, encode_request

#: How long a reply that *should* come may take. Generous: two cores are shared with
#: other test suites, and a missing reply shows up as a timeout marker, not a hang.
REPLY_TIMEOUT: Final = 2.0

#: How long to listen to conclude that *no* reply is coming. Both servers answer on
#: loopback in well under a millisecond, so 200 ms of silence is a safe verdict.
SILENCE: Final = 0.2

#: Packet types whose first field is a job handle issued by the server.
_HANDLE_ISSUERS: Final = frozenset({
    PacketType.JOB_CREATED, PacketType.JOB_ASSIGN, PacketType.JOB_ASSIGN_UNIQ,
    PacketType.JOB_ASSIGN_ALL,
})

_FD_IP_RE: Final = re.compile(rb"^\d+ (\S+) ", re.MULTILINE)
_PID_RE: Final = re.compile(rb"^OK \d+\n\Z")
_VERSION_RE: Final = re.compile(rb"^OK [0-9][0-9A-Za-z.+~-]*\n\Z")


def show(data: bytes) -> str:
    """Render bytes unambiguously (NULs, CR and LF visible) for a transcript line."""
    return repr(data)[2:-1]


class HandleMap:
    """Replaces server-issued job handles with ``H1``, ``H2`` ... in order of appearance.

    Handles are learnt from the packets that issue them (JOB_CREATED, JOB_ASSIGN*) and then
    replaced wherever they occur, including inside longer fields (WORK_FAIL with a trailing
    NUL) and admin text. A handle is only replaced where it is not followed by another
    alphanumeric character, so ``H:x:1`` never eats the front of ``H:x:12``.
    """

    def __init__(self) -> None:
        self._names: dict[bytes, bytes] = {}
        self._pattern: re.Pattern[bytes] | None = None

    def learn(self, handle: bytes) -> None:
        if handle and handle not in self._names:
            self._names[handle] = b"H%d" % (len(self._names) + 1)
            alternatives = b"|".join(
                re.escape(h) for h in sorted(self._names, key=len, reverse=True)
            )
            self._pattern = re.compile(b"(?:" + alternatives + b")(?![0-9A-Za-z])")

    def apply(self, data: bytes) -> bytes:
        if self._pattern is None:
            return data
        return self._pattern.sub(lambda m: self._names[m.group(0)], data)


class Conn:
    """One raw TCP connection to the server under test, owned by a :class:`Session`."""

    def __init__(self, session: Session, name: str, sock: socket.socket) -> None:
        self.session = session
        self.name = name
        self.sock = sock
        self.reader = PacketReader(expect=b"\0RES", allow_text=False)
        self.pending: list[Packet] = []
        self.raw = b""  # text replies are read here, unparsed
        self.closed = False
        self.close_noted = False

    # ------------------------------------------------------------------ sending

    def send(self, ptype: PacketType, *fields: bytes, label: str | None = None) -> None:
        """Send one request packet and note it (or ``label``, for time-dependent fields)."""
        shown = label if label is not None else _fields(self, fields)
        self.send_raw(encode_request(ptype, *fields), f"{ptype.name} {shown}")

    def send_raw(self, data: bytes, label: str | None = None) -> None:
        """Send arbitrary bytes (malformed packets); ``label`` is what the transcript says."""
        self.note_send(label if label is not None else show(data))
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.session.note(f"{self.name} !! send failed: {type(exc).__name__}")

    def note_send(self, label: str) -> None:
        """Note a send the script performs itself (e.g. byte by byte)."""
        self.session.note(f"{self.name} -> {label}".rstrip())

    # ---------------------------------------------------------------- receiving

    def _fill(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for bytes; False on timeout or when the peer closed."""
        if self.closed:
            return False
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        if not ready:
            return False
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.closed = True  # noted by _note_close, after the packets that preceded it
            return False
        self.raw += data
        return True

    def _parse(self) -> None:
        if self.raw:
            data, self.raw = self.raw, b""
            try:
                self.pending += self.reader.feed(data)
            except ProtocolError as exc:
                self.pending += exc.packets
                self.session.note(f"{self.name} <- <unframeable: {exc.message}> {show(data)}")

    def recv(self, count: int = 1, timeout: float = REPLY_TIMEOUT) -> list[Packet]:
        """Read up to ``count`` packets, noting each; a shortfall is noted as a timeout."""
        deadline = time.monotonic() + timeout
        self._parse()
        while len(self.pending) < count and self._fill(deadline - time.monotonic()):
            self._parse()
        got, self.pending = self.pending[:count], self.pending[count:]
        for ptype, fields in got:
            self._note_packet(ptype, fields)
        if len(got) < count and not self.closed:
            self.session.note(f"{self.name} <- <no reply within {timeout:g} s>")
        self._note_close()
        return got

    def recv_unnoted(self, count: int = 1, timeout: float = REPLY_TIMEOUT) -> list[Packet]:
        """Like :meth:`recv` but notes field sizes, not contents: for bodies too big to print."""
        deadline = time.monotonic() + timeout
        self._parse()
        while len(self.pending) < count and self._fill(deadline - time.monotonic()):
            self._parse()
        got, self.pending = self.pending[:count], self.pending[count:]
        for ptype, fields in got:
            if ptype in _HANDLE_ISSUERS and fields:
                self.session.handles.learn(fields[0])
            # A short first field is shown (normalised: usually a handle), the rest as sizes.
            shown = 1 if fields and len(fields[0]) <= 64 else 0
            head = f"'{show(self.session.handles.apply(fields[0]))}' " if shown else ""
            sizes = "+".join(str(len(f)) for f in fields[shown:])
            self.session.note(f"{self.name} <- {PacketType(ptype).name} {head}({sizes} bytes)")
        if len(got) < count and not self.closed:
            self.session.note(f"{self.name} <- <no reply within {timeout:g} s>")
        self._note_close()
        return got

    def quiet(self, timeout: float = SILENCE) -> list[Packet]:
        """Listen for ``timeout`` seconds expecting nothing; note whatever arrives."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline - time.monotonic()):
            pass
        self._parse()
        got, self.pending = self.pending, []
        for ptype, fields in got:
            self._note_packet(ptype, fields)
        if not got and not self.closed:
            self.session.note(f"{self.name} <- (nothing)")
        self._note_close()
        return got

    def _note_close(self) -> None:
        if self.closed and not self.close_noted:
            self.close_noted = True
            self.session.note(f"{self.name} <- <connection closed by server>")

    def _note_packet(self, ptype: int, fields: list[bytes]) -> None:
        if ptype in _HANDLE_ISSUERS and fields:
            self.session.handles.learn(fields[0])
        try:
            name = PacketType(ptype).name
        except ValueError:
            name = f"TYPE_{ptype}"
        self.session.note(f"{self.name} <- {name} {_fields(self, fields)}".rstrip())

    def sync(self) -> None:
        """ECHO round trip: once it returns, the server has processed all earlier packets
        from this connection, so a later packet on *another* connection cannot overtake them.
        """
        self.send(PacketType.ECHO_REQ, b"sync")
        self.recv(1)

    # ------------------------------------------------------------------- admin

    def admin(self, line: bytes, listing: bool = False, *, sort: bool = False,
              mask: Callable[[bytes], bytes] | None = None, eol: bytes = b"\r\n",
              timeout: float = REPLY_TIMEOUT) -> bytes:
        """Send one admin text line and note the raw reply.

        Args:
            listing: the reply is a ``.``-terminated list (else one line).
            sort: sort the list's lines first (gearmand prints hash-table order).
            mask: extra normalisation for values that may differ (pid, version).
            eol: line ending to send (gearadmin sends CRLF).
            timeout: how long to wait for the complete reply.
        """
        self.session.note(f"{self.name} -> {show(self.session.handles.apply(line + eol))}")
        self.sock.sendall(line + eol)
        deadline = time.monotonic() + timeout
        while not _text_complete(self.raw, listing) and self._fill(deadline - time.monotonic()):
            pass
        reply, self.raw = self.raw, b""
        text = self.session.handles.apply(reply)
        if listing:
            text = _FD_IP_RE.sub(rb"FD IP ", text)
            if sort and text.endswith(b".\n"):
                lines = text[:-2].splitlines(keepends=True)
                text = b"".join(sorted(lines)) + b".\n"
        if mask is not None:
            text = mask(text)
        complete = _text_complete(reply, listing)
        if complete:
            self.session.note(f"{self.name} <- {show(text)}")
        elif reply:
            self.session.note(f"{self.name} <- {show(text)} <incomplete>")
        elif not self.closed:
            self.session.note(f"{self.name} <- <no reply within {timeout:g} s>")
        self._note_close()
        return reply

    def read_raw(self, until: bytes, timeout: float = REPLY_TIMEOUT) -> bytes:
        """Note the raw bytes received until they end with ``until`` (or the timeout).

        For streams that mix binary packets and text replies, which neither
        :meth:`recv` nor :meth:`admin` can frame on its own.
        """
        deadline = time.monotonic() + timeout
        while not self.raw.endswith(until) and self._fill(deadline - time.monotonic()):
            pass
        data, self.raw = self.raw, b""
        suffix = "" if data.endswith(until) or self.closed else " <incomplete>"
        self.session.note(f"{self.name} <- raw {show(self.session.handles.apply(data))}{suffix}")
        self._note_close()
        return data

    def close(self) -> None:
        """Close this connection (a client or worker going away)."""
        self.session.note(f"{self.name} closes")
        self.sock.close()
        self.closed = self.close_noted = True


def _text_complete(data: bytes, listing: bool) -> bool:
    if not data.endswith(b"\n"):
        return False
    if not listing:
        return True
    return data == b".\n" or data.endswith(b"\n.\n")


def _fields(conn: Conn, fields: tuple[bytes, ...] | list[bytes]) -> str:
    return " ".join(f"'{show(conn.session.handles.apply(f))}'" for f in fields)


def mask_pid(text: bytes) -> bytes:
    """``OK 12345\\n`` -> ``OK <pid>\\n``; anything else is left as is (and will differ)."""
    return b"OK <pid>\n" if _PID_RE.match(text) else text


def mask_version(text: bytes) -> bytes:
    """``OK 1.1.20+ds\\n`` -> ``OK <version>\\n``; anything else is left as is."""
    return b"OK <version>\n" if _VERSION_RE.match(text) else text


class Session:
    """One scenario run against one server: its connections and its transcript."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.transcript: list[str] = []
        self.handles = HandleMap()
        self.conns: list[Conn] = []

    def connect(self, name: str) -> Conn:
        sock = socket.create_connection((self.host, self.port), timeout=REPLY_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(self, name, sock)
        self.conns.append(conn)
        return conn

    def note(self, line: str) -> None:
        self.transcript.append(line)

    def wait(self, seconds: float) -> None:
        """Let server-side time pass (epoch jobs); noted so transcripts show the pause."""
        self.note(f"-- wait {seconds:g} s")
        time.sleep(seconds)

    def pooled(self, conns: list[Conn], timeout: float = SILENCE) -> None:
        """Note what a group of connections received in total, not who got what.

        For replies a server may send to *any* member of a group (which of two equally
        idle sleepers gets the one NOOP is not part of the protocol).
        """
        time.sleep(timeout)
        counts: dict[str, int] = {}
        for conn in conns:
            while conn._fill(0):
                pass
            conn._parse()
            for ptype, _fields in conn.pending:
                name = PacketType(ptype).name
                counts[name] = counts.get(name, 0) + 1
            conn.pending = []
        names = "+".join(conn.name for conn in conns)
        summary = ", ".join(f"{n} x {name}" for name, n in sorted(counts.items()))
        self.note(f"{names} <- {summary or '(nothing)'}")

    def finish(self) -> list[str]:
        """Note any reply nobody read, close every connection, return the transcript."""
        time.sleep(0.05)  # one short grace period for stragglers, shared by all connections
        open_conns = [conn for conn in self.conns if not conn.closed]
        # Read everything before closing anything: a close can itself cause replies on
        # the other connections (a NOOP passed on by a woken worker that left).
        for conn in open_conns:
            while conn._fill(0):
                pass
            conn._parse()
            for ptype, fields in conn.pending:
                conn._note_packet(ptype, fields)
            conn._note_close()
        for conn in open_conns:
            conn.sock.close()
            conn.closed = True
        return self.transcript
