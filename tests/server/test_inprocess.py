"""The in-process server API (``Server(ServerConfig(port=0))``) that embedders and tests
use: start, serve a job over asyncio streams, report its port, close cleanly."""

from __future__ import annotations

import asyncio

from gearshift.protocol import RES, PacketReader, encode_request
from gearshift.server import Server, ServerConfig

from ._wire import P


async def _exchange(port: int) -> None:
    wr_reader, wr_writer = await asyncio.open_connection("127.0.0.1", port)
    cl_reader, cl_writer = await asyncio.open_connection("127.0.0.1", port)
    worker_codec = PacketReader(expect=RES, allow_text=False)
    client_codec = PacketReader(expect=RES, allow_text=False)

    async def recv(reader: asyncio.StreamReader, codec: PacketReader) -> tuple[int, list[bytes]]:
        while True:
            packets = codec.feed(await asyncio.wait_for(reader.read(65536), 10))
            if packets:
                assert len(packets) == 1, packets
                return packets[0]

    wr_writer.write(encode_request(P.CAN_DO, b"f") + encode_request(P.PRE_SLEEP))
    cl_writer.write(encode_request(P.SUBMIT_JOB, b"f", b"", b"in-process"))
    ptype, [handle] = await recv(cl_reader, client_codec)
    assert ptype == P.JOB_CREATED
    assert await recv(wr_reader, worker_codec) == (P.NOOP, [])
    wr_writer.write(encode_request(P.GRAB_JOB))
    assert await recv(wr_reader, worker_codec) == (P.JOB_ASSIGN, [handle, b"f", b"in-process"])
    wr_writer.write(encode_request(P.WORK_COMPLETE, handle, b"ok"))
    assert await recv(cl_reader, client_codec) == (P.WORK_COMPLETE, [handle, b"ok"])
    for writer in (wr_writer, cl_writer):
        writer.close()
        await writer.wait_closed()


async def _run() -> None:
    server = Server(ServerConfig(listen=("127.0.0.1",), port=0, store="memory",
                                 shutdown_timeout=1))
    await server.start()
    [port] = server.ports
    assert port > 0
    await _exchange(port)
    assert dict(server.broker.jobs.items()) == {}
    await asyncio.wait_for(server.close(), 10)
    await asyncio.wait_for(server.wait_closed(), 1)
    try:
        await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return
    raise AssertionError("server still accepting after close()")


def test_in_process_server_round_trip_and_close() -> None:
    asyncio.run(_run())
