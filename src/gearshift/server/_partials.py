"""The deadline for finishing a started packet (``--packet-timeout``).

A peer may declare a large body, send most of it and stall: the reader holds those bytes
for as long as the connection lives. gearmand waits for ever. Here a periodic sweep
(interpreted, off the per-read path: a few attribute reads per connection per sweep)
closes a connection whose incomplete packet has not changed identity for the timeout.
The identity is :attr:`PacketReader.started`, bumped each time a read ends inside a
packet, so a peer streaming many large packets, each split across reads, is never
mistaken for one that stalls on a single packet. The server-wide byte budget for partial
packets is enforced by the readers themselves (:class:`PartialBudget`).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gearshift.server._wire import Pump

class PacketDeadline:
    """Closes connections that leave one packet incomplete for longer than ``timeout``.

    Sweeps every ``timeout / 4`` seconds, at most once a second, while the server runs.
    The clock of a packet starts when a sweep first sees it incomplete, so it is cut
    between ``timeout`` and ``timeout`` plus one sweep interval after it started.
    """

    def __init__(self, pump: Pump, timeout: float) -> None:
        self.pump = pump
        self.timeout = timeout
        self.interval = min(1.0, max(timeout / 4, 0.02))
        #: peer id -> (the reader's ``started`` when first seen incomplete, that time)
        self._seen: dict[int, tuple[int, float]] = {}
        self._handle: asyncio.TimerHandle | None = None

    def ensure_running(self) -> None:
        """Arm the next sweep if it is not armed (from server start to :meth:`stop`)."""
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.interval, self._sweep)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        self._handle = None
        now = time.monotonic()
        seen = self._seen
        current: dict[int, tuple[int, float]] = {}
        expired = []
        for peer_id, link in self.pump.links.items():
            reader = link.reader
            if not reader.buffered:
                continue
            mark = reader.started
            before = seen.get(peer_id)
            if before is None or before[0] != mark:
                current[peer_id] = (mark, now)
            elif now - before[1] >= self.timeout:
                expired.append(link)
            else:
                current[peer_id] = before
        self._seen = current
        for link in expired:
            link.expire_packet(self.timeout)
        self.ensure_running()
