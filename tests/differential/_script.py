"""The scenario registry and the small helpers every script uses.

A scenario is a plain function of a :class:`Session` registered with :func:`scenario`;
it only sends and reads, it never asserts: the comparison of the two servers'
transcripts is the assertion. Scripts are written from what gearmand does (see
docs/compatibility.md), so ``recv(n)`` counts are gearmand's reply counts.

Connections sync with an ECHO round trip (:meth:`Conn.sync`) before another connection
acts on what they sent, because gearmand reads different sockets on different threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gearshift.protocol import Packet, PacketType

from ._session import Conn, Session

P = PacketType


@dataclass(frozen=True)
class Scenario:
    """A named script plus the server options it needs (same flags for both servers)."""

    name: str
    script: Callable[[Session], None]
    server_args: tuple[str, ...] = ()


SCENARIOS: dict[str, Scenario] = {}


def scenario(*server_args: str) -> Callable[[Callable[[Session], None]], Callable[[Session], None]]:
    """Register the decorated script under its function name."""

    def register(script: Callable[[Session], None]) -> Callable[[Session], None]:
        SCENARIOS[script.__name__] = Scenario(script.__name__, script, tuple(server_args))
        return script

    return register


def handle_of(packets: list[Packet]) -> bytes:
    """First field of the first packet (a job handle), or a placeholder if none came.

    The placeholder keeps a scenario running after a missing reply, so the transcript
    shows every later consequence instead of stopping at the first difference.
    """
    if packets and packets[0][1]:
        return packets[0][1][0]
    return b"missing-handle"


def worker(s: Session, name: str, *functions: bytes) -> Conn:
    """A connection that registered ``functions`` (synced, so registration is done)."""
    conn = s.connect(name)
    for function in functions:
        conn.send(P.CAN_DO, function)
    conn.sync()
    return conn


def submit(conn: Conn, ptype: PacketType, function: bytes, unique: bytes,
           data: bytes) -> bytes:
    """Send one SUBMIT_* and return the handle from its JOB_CREATED."""
    conn.send(ptype, function, unique, data)
    return handle_of(conn.recv(1))
