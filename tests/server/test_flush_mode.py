"""Where replies are written from: the end of each read when traffic is quiet, once per
loop iteration under load (:class:`FlushMode`, :meth:`Pump.read_done`).

The decision is plain counting, tested with plain calls and hypothesis; the switch
itself is driven here through ``data_received`` with a stand-in event loop that holds
the callbacks back, as in test_flush_order.py.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from gearshift.protocol import PacketType, encode_request
from gearshift.server._wire import (
    PROBE_EVERY,
    WINDOW_ITERATIONS,
    WINDOW_PROBES,
    FlushMode,
    GearmanConnection,
)

from .test_flush_order import (
    RecordingLoop,
    RecordingTransport,
    _decode,
    _setup,
)

P = PacketType


def test_starts_gathering_replies_per_iteration() -> None:
    assert FlushMode().inline is False


def test_a_window_of_single_read_iterations_turns_inline() -> None:
    mode = FlushMode()
    for _ in range(WINDOW_ITERATIONS - 1):
        mode.iteration(1)
    assert mode.inline is False  # the window is not complete yet
    mode.iteration(1)
    assert mode.inline is True


def test_a_busy_window_stays_per_iteration() -> None:
    mode = FlushMode()
    for i in range(WINDOW_ITERATIONS * 4):
        mode.iteration(1 if i % 2 else 2)  # 1.5 reads per iteration: not quiet
    assert mode.inline is False


def test_probes_that_see_busy_iterations_turn_back() -> None:
    mode = FlushMode()
    for _ in range(WINDOW_ITERATIONS):
        mode.iteration(1)
    for _ in range(WINDOW_PROBES):
        mode.probe(1)
    assert mode.inline is True  # quiet probes: stays
    for _ in range(WINDOW_PROBES - 1):
        mode.probe(2)
    assert mode.inline is True
    mode.probe(2)
    assert mode.inline is False


@given(st.lists(st.integers(min_value=1, max_value=20), min_size=WINDOW_ITERATIONS,
                max_size=WINDOW_ITERATIONS))
def test_one_window_decides_by_its_average(reads: list[int]) -> None:
    mode = FlushMode()
    for n in reads:
        mode.iteration(n)
    assert mode.inline is (sum(reads) / len(reads) < 1.5)


@given(st.lists(st.integers(min_value=1, max_value=20), min_size=WINDOW_PROBES,
                max_size=WINDOW_PROBES))
def test_one_probe_window_decides_by_its_average(seen: list[int]) -> None:
    mode = FlushMode()
    for _ in range(WINDOW_ITERATIONS):
        mode.iteration(1)
    for n in seen:
        mode.probe(n)
    assert mode.inline is (sum(seen) / len(seen) < 2)


def _run_loop(loop: RecordingLoop) -> None:
    """The next loop iteration's callbacks (the flush, a probe), in order."""
    callbacks: list[Callable[[], None]] = loop.callbacks[:]
    loop.callbacks.clear()
    for callback in callbacks:
        callback()


def _echo(link: GearmanConnection, loop: RecordingLoop) -> None:
    """One iteration with one read: an ECHO_REQ, its reply flushed."""
    link.data_received(encode_request(P.ECHO_REQ, b"x"))
    _run_loop(loop)


def test_quiet_traffic_is_answered_from_the_read_and_a_burst_goes_back() -> None:
    _, pump, log = _setup()
    loop = RecordingLoop()
    pump.loop = loop
    links = [pump.connection() for _ in range(3)]
    for i, link in enumerate(links):
        link.connection_made(RecordingTransport(f"client{i}", log))
    one = links[0]
    for _ in range(WINDOW_ITERATIONS):
        _echo(one, loop)
    assert pump.mode.inline is True
    log.clear()
    # Inline: the reply leaves before the loop runs anything.
    one.data_received(encode_request(P.ECHO_REQ, b"now"))
    assert [(name, _decode(data)) for name, data in log] == [
        ("client0", [(P.ECHO_RES, [b"now"])])]
    _run_loop(loop)
    # Bursts: every probe finds three reads in the probing read's iteration.
    for _ in range(WINDOW_PROBES * PROBE_EVERY):
        for link in links:
            link.data_received(encode_request(P.ECHO_REQ, b"b"))
        _run_loop(loop)
        if not pump.mode.inline:
            break
    assert pump.mode.inline is False
    log.clear()
    # Per iteration again: a client's reply waits for the loop's flush.
    one.data_received(encode_request(P.ECHO_REQ, b"later"))
    assert log == []
    _run_loop(loop)
    assert [(name, _decode(data)) for name, data in log] == [
        ("client0", [(P.ECHO_RES, [b"later"])])]
