"""One connection to one server: a stream plus the shared codec's incremental parser."""

# ruff: noqa: ASYNC109 -- explicit timeouts: the same code runs as the blocking client
from __future__ import annotations

import contextlib
import time
from collections import deque
from ssl import SSLContext

from gearshift.client._backends.asyncio_ import AsyncStream, open_stream
from gearshift.client._errors import ConnectionFailed, ConnectionLost, GearmanTimeout
from gearshift.client._servers import Address
from gearshift.protocol import RES, Packet, PacketReader, ProtocolError


class AsyncConnection:
    """A connected socket that sends bytes and yields parsed ``(type, fields)`` packets.

    ``read_packet`` is for code that owns the connection (a worker slot);
    ``feed`` is for code that multiplexes several connections (the client).
    """

    def __init__(self, address: Address, stream: AsyncStream) -> None:
        self.address = address
        self.stream = stream
        self._parser = PacketReader(expect=RES, allow_text=False)
        self._ready: deque[Packet] = deque()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    @classmethod
    async def open(cls, address: Address, timeout: float | None,
                   tls: SSLContext | None = None) -> AsyncConnection:
        """Connect (over TLS with ``tls``), translating socket and TLS errors (a refused
        certificate is an ssl.SSLError, an OSError) into ConnectionFailed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            stream = await open_stream(address.host, address.port, deadline, tls)
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect to {address}: {exc}") from exc
        return cls(address, stream)

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.write(data)
        except OSError as exc:
            raise ConnectionLost(f"{self.address}: {exc}") from exc

    def feed(self, data: bytes) -> list[Packet]:
        """Parse received bytes; b"" (end of stream) raises ConnectionLost."""
        if not data:
            raise ConnectionLost(f"{self.address} closed the connection")
        try:
            return self._parser.feed(data)
        except ProtocolError as exc:
            raise ConnectionLost(f"{self.address} sent unframeable data: {exc}") from exc

    async def read_packet(self, deadline: float | None) -> Packet:
        """The next packet from the server."""
        while not self._ready:
            try:
                data = await self.stream.read(deadline)
            except GearmanTimeout:
                raise
            except OSError as exc:
                raise ConnectionLost(f"{self.address}: {exc}") from exc
            self._ready.extend(self.feed(data))
        return self._ready.popleft()

    def abort(self) -> None:
        self.stream.abort()

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            await self.stream.close()
