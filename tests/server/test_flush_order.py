"""The order in which one loop iteration's output leaves: what a worker waits on first.

A worker holds one job at a time, so the server's throughput follows the worker's round
trip; :meth:`Pump.flush` therefore writes peers with a JOB_ASSIGN or NOOP queued
(``Peer.urgent``) before the others, a worker's JOB_ASSIGN leaves at the end of its own
read, and a NO_JOB waits its turn behind clients' results (docs/architecture.md, "The
hot path"). These tests drive the broker with plain calls and record the writes of each
connection in order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gearshift.broker import Broker, BrokerConfig, Peer
from gearshift.protocol import RES, PacketReader, PacketType, encode_request
from gearshift.server._wire import GearmanConnection, Pump

P = PacketType


class RecordingTransport:
    """Just enough of a transport for ``connection_made``; writes go to a shared log."""

    def __init__(self, name: str, log: list[tuple[str, bytes]]) -> None:
        self.name = name
        self.log = log

    def get_extra_info(self, key: str) -> Any:
        return None

    def write(self, data: bytes) -> None:
        self.log.append((self.name, data))


def _setup() -> tuple[Broker, Pump, list[tuple[str, bytes]]]:
    broker = Broker(BrokerConfig())
    pump = Pump(broker, 1 << 20, lambda sock: None, lambda how: None)
    return broker, pump, []


def _connect(pump: Pump, name: str, log: list[tuple[str, bytes]]) -> Peer:
    """A connection made over a recording transport; its broker-side peer."""
    link = pump.connection()
    link.connection_made(RecordingTransport(name, log))
    assert link.peer is not None
    return link.peer


def _decode(data: bytes) -> list[tuple[int, list[bytes]]]:
    return PacketReader(expect=RES, allow_text=False).feed(data)


def test_noop_to_a_sleeping_worker_is_written_before_the_clients_job_created() -> None:
    broker, pump, log = _setup()
    worker, client = _connect(pump, "worker", log), _connect(pump, "client", log)
    broker.handle_packets(worker, [(P.CAN_DO, [b"f"]), (P.PRE_SLEEP, [])])
    pump.flush()
    assert log == []
    # The client's JOB_CREATED is queued first, the worker's NOOP second.
    broker.handle_packets(client, [(P.SUBMIT_JOB, [b"f", b"", b"x"])])
    pump.flush()
    assert [name for name, _ in log] == ["worker", "client"]
    assert _decode(log[0][1]) == [(P.NOOP, [])]
    [(ptype, [handle])] = _decode(log[1][1])
    assert ptype == P.JOB_CREATED
    assert handle.startswith(b"H:")


def test_next_job_assign_is_written_before_the_finished_jobs_work_complete() -> None:
    broker, pump, log = _setup()
    worker, client = _connect(pump, "worker", log), _connect(pump, "client", log)
    broker.handle_packets(worker, [(P.CAN_DO, [b"f"])])
    broker.handle_packets(client, [(P.SUBMIT_JOB, [b"f", b"", b"one"]),
                                        (P.SUBMIT_JOB, [b"f", b"", b"two"])])
    broker.handle_packets(worker, [(P.GRAB_JOB, [])])
    pump.flush()
    created = [p for name, data in log if name == "client" for p in _decode(data)]
    assert [t for t, _ in created] == [P.JOB_CREATED, P.JOB_CREATED]
    first, second = (fields[0] for _, fields in created)
    log.clear()
    # One read from the worker: the result (client output queued first), the next grab.
    broker.handle_packets(worker, [(P.WORK_COMPLETE, [first, b"r1"]),
                                        (P.GRAB_JOB, [])])
    pump.flush()
    assert [name for name, _ in log] == ["worker", "client"]
    assert _decode(log[0][1]) == [(P.JOB_ASSIGN, [second, b"f", b"two"])]
    assert _decode(log[1][1]) == [(P.WORK_COMPLETE, [first, b"r1"])]


def test_every_dirty_peer_is_written_once_whatever_the_roles() -> None:
    broker, pump, log = _setup()
    clients = [_connect(pump, f"client{i}", log) for i in range(3)]
    worker = _connect(pump, "worker", log)
    broker.handle_packets(worker, [(P.CAN_DO, [b"f"]), (P.PRE_SLEEP, [])])
    for client in clients:
        broker.handle_packets(client, [(P.SUBMIT_JOB, [b"f", b"", b"x"]),
                                          (P.ECHO_REQ, [b"ping"])])
    pump.flush()
    names = [name for name, _ in log]
    assert names == ["worker", "client0", "client1", "client2"]
    for name, data in log[1:]:
        assert [t for t, _ in _decode(data)] == [P.JOB_CREATED, P.ECHO_RES], name
    pump.flush()  # nothing left: no second write to anyone
    assert len(log) == 4


class RecordingLoop:
    """Stands in for the event loop: the flush callback is kept, not run."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def call_soon(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)


def _worker_and_client() -> tuple[RecordingLoop, list[tuple[str, bytes]],
                                  GearmanConnection, GearmanConnection]:
    """Two connections fed through ``data_received``, as the event loop would, with the
    loop's flush callback held back until the test runs it."""
    _, pump, log = _setup()
    loop = RecordingLoop()
    pump.loop = loop
    worker_link, client_link = pump.connection(), pump.connection()
    worker_link.connection_made(RecordingTransport("worker", log))
    client_link.connection_made(RecordingTransport("client", log))
    return loop, log, worker_link, client_link


def test_a_workers_reply_to_its_own_read_is_written_before_the_loop_flushes() -> None:
    loop, log, worker_link, client_link = _worker_and_client()
    worker_link.data_received(encode_request(P.CAN_DO, b"f"))
    client_link.data_received(encode_request(P.SUBMIT_JOB, b"f", b"", b"x"))
    # A client's replies wait for the flush, where its other replies may join them.
    assert log == []
    worker_link.data_received(encode_request(P.GRAB_JOB))
    [(name, data)] = log
    assert name == "worker"
    [(ptype, [handle, function, payload])] = _decode(data)
    assert (ptype, function, payload) == (P.JOB_ASSIGN, b"f", b"x")
    # The flush the loop would run next writes the rest, and nothing twice.
    assert len(loop.callbacks) == 1
    loop.callbacks.pop()()
    assert [name for name, _ in log] == ["worker", "client"]
    assert _decode(log[1][1]) == [(P.JOB_CREATED, [handle])]


def test_no_job_waits_for_the_flush_and_follows_the_clients_result() -> None:
    # Depth 1: the client's WORK_COMPLETE is what the next submission waits on; the
    # worker's NO_JOB only sends it to sleep, so it neither leaves at once nor first.
    loop, log, worker_link, client_link = _worker_and_client()
    worker_link.data_received(encode_request(P.CAN_DO, b"f"))
    client_link.data_received(encode_request(P.SUBMIT_JOB, b"f", b"", b"x"))
    worker_link.data_received(encode_request(P.GRAB_JOB))
    loop.callbacks.pop()()
    [(ptype, [handle, _, _])] = _decode(log[0][1])
    assert ptype == P.JOB_ASSIGN
    log.clear()
    worker_link.data_received(encode_request(P.WORK_COMPLETE, handle, b"done")
                              + encode_request(P.GRAB_JOB))
    assert log == []
    loop.callbacks.pop()()
    assert [name for name, _ in log] == ["client", "worker"]
    assert _decode(log[0][1]) == [(P.WORK_COMPLETE, [handle, b"done"])]
    assert _decode(log[1][1]) == [(P.NO_JOB, [])]


def test_the_noop_answering_pre_sleep_with_a_job_waiting_is_written_at_once() -> None:
    loop, log, worker_link, client_link = _worker_and_client()
    client_link.data_received(encode_request(P.SUBMIT_JOB, b"f", b"", b"x"))
    loop.callbacks.pop()()
    log.clear()
    # The job was queued before the worker could do it: PRE_SLEEP finds it waiting.
    worker_link.data_received(encode_request(P.CAN_DO, b"f") + encode_request(P.PRE_SLEEP))
    assert [(name, _decode(data)) for name, data in log] == [("worker", [(P.NOOP, [])])]
