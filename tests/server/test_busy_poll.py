"""``--busy-poll``: after a read the event loop keeps polling without sleeping for a
bounded time (:meth:`Pump._spin`), and an idle server goes back to costing nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gearshift.broker import Broker, BrokerConfig
from gearshift.cli import build_parser
from gearshift.cli._serve import config_from_args
from gearshift.protocol import PacketType, encode_request
from gearshift.server._config import DEFAULT_BUSY_POLL
from gearshift.server._wire import Pump
from gearshift.testing import GearshiftServer

from ._wire import Wire, round_trip
from .test_flush_order import RecordingLoop, RecordingTransport

P = PacketType


def test_default_and_values_reach_the_config() -> None:
    config = config_from_args(build_parser().parse_args(["serve"]))
    assert config.busy_poll == DEFAULT_BUSY_POLL == 0.0002
    for text, seconds in (("0", 0.0), ("50us", 50e-6), ("1ms", 0.001)):
        config = config_from_args(build_parser().parse_args(["serve", "--busy-poll", text]))
        assert config.busy_poll == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["-1", "fast", "200 microseconds"])
def test_bad_durations_are_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--busy-poll", bad])
    assert exit_info.value.code == 2
    assert "--busy-poll" in capsys.readouterr().err


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pump(busy_poll: float) -> tuple[Pump, RecordingLoop, FakeClock]:
    pump = Pump(Broker(BrokerConfig()), 1 << 20, lambda sock: None, lambda how: None,
                busy_poll=busy_poll)
    loop, clock = RecordingLoop(), FakeClock()
    pump.loop = loop
    pump.monotonic = clock
    return pump, loop, clock


def _tick(loop: RecordingLoop) -> None:
    callbacks = loop.callbacks[:]
    loop.callbacks.clear()
    for callback in callbacks:
        callback()


def test_the_loop_keeps_ticking_until_the_poll_time_passes_without_a_read() -> None:
    pump, loop, clock = _pump(0.001)
    link = pump.connection()
    link.connection_made(RecordingTransport("client", []))
    link.data_received(encode_request(P.ECHO_REQ, b"x"))
    assert len(loop.callbacks) == 1
    for _ in range(5):  # no time passes: it polls on
        _tick(loop)
        assert len(loop.callbacks) == 1
    clock.now += 0.0009
    _tick(loop)
    assert len(loop.callbacks) == 1
    # A read restarts the time; without one the poll ends once it has passed.
    link.data_received(encode_request(P.ECHO_REQ, b"y"))
    _tick(loop)
    clock.now += 0.0009
    _tick(loop)  # the first tick without a read starts the time again
    assert len(loop.callbacks) == 1
    clock.now += 0.0011
    _tick(loop)
    assert loop.callbacks == []


def test_without_busy_poll_the_flush_runs_once() -> None:
    pump, loop, _ = _pump(0.0)
    link = pump.connection()
    link.connection_made(RecordingTransport("client", []))
    link.data_received(encode_request(P.ECHO_REQ, b"x"))
    _tick(loop)
    assert loop.callbacks == []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_server_stops_polling() -> None:
    # The default (200 us) and a long poll: either way, once the jobs stop the loop
    # sleeps again, so a second with nothing to do costs next to no CPU (a poll that
    # never ended would cost the whole second).
    for args in ([], ["--busy-poll", "50ms"]):
        with GearshiftServer(store="memory", extra_args=args) as srv:
            for _ in range(20):
                round_trip(srv.address)
            wire = Wire.to(srv.address)
            assert wire.call(P.ECHO_REQ, b"ok") == (P.ECHO_RES, [b"ok"])
            time.sleep(0.3)
            before = _cpu_seconds(srv.pid)
            time.sleep(1.0)
            assert _cpu_seconds(srv.pid) - before < 0.2, args
            wire.close()
