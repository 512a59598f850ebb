"""The server's own timer fires schedule slots and expires kept outcomes.

The broker computes these deadlines (tests/broker drive them with a fake clock and
explicit ``run_timers`` calls); only the server's event loop can arm a timer for them
on an idle server. Here an in-process server gets a broker clock shifted to just
before a minute boundary, so a ``* * * * *`` schedule's slot comes in under a second:
with no other traffic, only the server's timer can submit the job and wake the worker.
"""

from __future__ import annotations

import asyncio
import math
import time

from gearshift.protocol import RES, PacketReader, encode_request
from gearshift.server import Server, ServerConfig

from ._wire import P

#: Real seconds from the schedule's submission to its first slot.
LEAD_S = 0.5


async def _recv(reader: asyncio.StreamReader, codec: PacketReader,
                within: float) -> tuple[int, list[bytes]]:
    """The next packet; fails (TimeoutError) if none arrives ``within`` seconds."""
    while True:
        data = await asyncio.wait_for(reader.read(65536), within)
        assert data, "connection closed"
        packets = codec.feed(data)
        if packets:
            assert len(packets) == 1, packets
            ptype, fields = packets[0]
            return int(ptype), list(fields)


async def _schedule_fires_without_traffic() -> None:
    server = Server(ServerConfig(listen=("127.0.0.1",), port=0, store="memory",
                                 shutdown_timeout=1))
    shift = 0.0
    server.broker.clock = lambda: time.time() + shift
    await server.start()
    try:
        [port] = server.ports
        wr, ww = await asyncio.open_connection("127.0.0.1", port)
        cr, cw = await asyncio.open_connection("127.0.0.1", port)
        wcodec = PacketReader(expect=RES, allow_text=False)
        ccodec = PacketReader(expect=RES, allow_text=False)
        ww.write(encode_request(P.CAN_DO, b"tick") + encode_request(P.PRE_SLEEP))
        await ww.drain()
        now = time.time()
        slot = math.floor(now / 60 + 1) * 60  # the next minute, in the shifted time
        shift = slot - LEAD_S - now
        # FUNC, UNIQ, then every cron field empty ("* * * * *"), DATA.
        cw.write(encode_request(P.SUBMIT_JOB_SCHED, b"tick", b"", b"", b"", b"", b"", b"",
                                b"tock"))
        ptype, [key] = await _recv(cr, ccodec, 5)
        assert ptype == P.JOB_CREATED
        assert key.startswith(b"S:")
        # Nothing else is sent to the server from here until the worker is woken.
        assert await _recv(wr, wcodec, LEAD_S + 5) == (P.NOOP, [])
        assert server.broker.clock() >= slot, "the schedule fired before its slot"
        ww.write(encode_request(P.GRAB_JOB))
        ptype, fields = await _recv(wr, wcodec, 5)
        assert (ptype, fields[1:]) == (P.JOB_ASSIGN, [b"tick", b"tock"])
        for writer in (ww, cw):
            writer.close()
            await writer.wait_closed()
    finally:
        await asyncio.wait_for(server.close(), 10)


def test_schedule_slot_fires_on_an_idle_server() -> None:
    asyncio.run(_schedule_fires_without_traffic())
