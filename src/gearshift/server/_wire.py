"""The server's per-read and per-loop-iteration work: socket callbacks and output flushing.

Everything in this module runs for every read or every event-loop iteration (well over
100k times a second under load), so it is compiled by mypyc with the codec and the
broker (setup.py), and a read goes socket -> codec -> broker -> output buffers without
entering the interpreter. Measured on 2026-12-01 (gload sync, 8 clients x 16, 4 workers,
median of 4 interleaved runs): compiling it cut the server's user CPU per job from 5.35
to 4.7 us.

What stays in :mod:`._server` (interpreted) is what happens once: listeners, startup,
shutdown, the store.

Because a mypyc class cannot inherit from a Python class, :class:`GearmanConnection` does
not subclass :class:`asyncio.Protocol`; it implements the protocol's methods, which is
all that asyncio and uvloop look for (neither checks the base class of a plain,
non-buffered protocol).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from gearshift.broker import Broker, Peer, error_packet
from gearshift.broker._broker import BATCH_PACKETS
from gearshift.protocol import ErrorCode, PacketReader, PartialBudget, ProtocolError

log: Final = logging.getLogger("gearshift.server")

#: Bytes of one unfinished packet past which its connection is read once per loop
#: iteration: uvloop (libuv) reads a readable socket up to 32 times per iteration, so 34
#: peers uploading 60 MiB bodies at once held one iteration for ~0.3-0.5 s (hostile load
#: b, docs/benchmarks.md); a body under this size still arrives in one iteration.
BIG_BODY_STEP: Final = 1 << 20

#: Loop iterations (batch mode) or probes (inline mode) over which FlushMode averages the
#: reads acted on per iteration before it decides again.
WINDOW_ITERATIONS: Final = 64
WINDOW_PROBES: Final = 8

#: While replies are written from the read's own callback, one read in this many checks
#: (a ``call_soon`` probe) how many reads follow it in the same loop iteration.
PROBE_EVERY: Final = 8


class FlushMode:
    """Whether replies are written at the end of each read or once per loop iteration.

    Under load several sockets are readable in one loop iteration and their replies to
    one peer (a client's WORK_COMPLETEs from several workers) must leave in one write,
    so the flush waits for the end of the iteration. With about one read per iteration
    -- a web request waiting on its one job -- there is nothing to gather, and the
    ``call_soon``, the idle callback with its GIL round trip and the second entry into
    compiled code cost ~7,400 of ~44,200 instructions per depth-1 round trip
    (callgrind, 2026-12-08). Flushing at every read unconditionally cost sync 8x16 30%
    and coalesce 20% (benchmarks/ab.py), so the mode follows the traffic:

    * batch -> inline when the last WINDOW_ITERATIONS iterations averaged under 1.5
      reads (depth 1 averages ~1.3: a client's next SUBMIT_JOB often shares an
      iteration with the worker's PRE_SLEEP);
    * inline -> batch when WINDOW_PROBES probes saw 2 or more reads on average from the
      probing read to the end of its iteration: about 3 reads per iteration, as the
      probing read falls anywhere in it (sync 8x16 averages ~4.5).

    No I/O and no clock: :class:`Pump` feeds it counts.
    """

    def __init__(self) -> None:
        self.inline = False
        self._iterations = 0  # batch: iterations in this window
        self._reads = 0  # batch: their reads
        self._probes = 0  # inline: probes in this window
        self._probed = 0  # inline: reads they saw

    def iteration(self, reads: int) -> None:
        """Batch mode: a flush ended an iteration that acted on ``reads`` (>= 1) reads."""
        self._iterations += 1
        self._reads += reads
        if self._iterations >= WINDOW_ITERATIONS:
            if self._reads * 2 < self._iterations * 3:
                self.inline = True
            self._iterations = self._reads = 0

    def probe(self, reads: int) -> None:
        """Inline mode: a probe saw ``reads`` (>= 1) reads from the probing one to the
        end of its iteration."""
        self._probes += 1
        self._probed += reads
        if self._probes >= WINDOW_PROBES:
            if self._probed >= 2 * self._probes:
                self.inline = False
            self._probes = self._probed = 0


class Pump:
    """Moves the broker's output to the sockets and its timers onto the event loop.

    Under load, writing is deferred to one ``call_soon`` callback per loop iteration, so
    the replies caused by every socket that was readable in that iteration leave in one
    ``write`` per peer; this halves the send() calls (measured: they were 42% of samples
    when flushing after each read). The exception is the JOB_ASSIGN (or NOOP) a worker's
    own read earns it, which :meth:`read_done` writes at once. With quiet traffic
    (:class:`FlushMode`) every read's replies are written at its end, and ``busy_poll``
    keeps the flush callback running until the loop has been idle that long.

    Args:
        broker: the dispatcher whose ``Peer.out`` buffers this writes.
        max_packet_size: passed to each connection's :class:`PacketReader`.
        tune_socket: called with each accepted socket (TCP_NODELAY, keepalive).
        on_shutdown: called with ``"graceful"`` or ``"immediate"`` when an admin
            ``shutdown`` was accepted by the broker.
        max_connections: open connections beyond which a new one is closed at once
            (0 = no limit); see :meth:`refuse`.
        partial_packets_max: bytes all connections together may hold in partly
            received packets (0 = no limit); see :class:`PartialBudget`.
        busy_poll: seconds the event loop keeps polling without sleeping after the
            last read (``--busy-poll``; 0 = sleep at once); see :meth:`_spin`.
    """

    def __init__(self, broker: Broker, max_packet_size: int,
                 tune_socket: Callable[[Any], None],
                 on_shutdown: Callable[[str], None], max_connections: int = 0,
                 partial_packets_max: int = 0, busy_poll: float = 0.0) -> None:
        self.broker = broker
        self.busy_poll = busy_poll
        self.read_since_tick = False  # a read since the last flush callback (busy_poll)
        self._spin_until = 0.0  # monotonic end of the current busy poll; 0: none yet
        #: the clock of the busy poll (tests replace it)
        self.monotonic: Callable[[], float] = time.monotonic
        #: shared by every connection's reader (None: no budget)
        self.budget: PartialBudget | None = (
            PartialBudget(partial_packets_max) if partial_packets_max > 0 else None)
        self.max_connections = max_connections
        self.refused = 0  # connections refused since the last warning
        self._refusal_logged = -1e9  # monotonic time of that warning
        self.max_packet_size = max_packet_size
        self.tune_socket = tune_socket
        self.on_shutdown = on_shutdown
        #: called with (transport, peer) for each new connection when set (--acl: the
        #: peer's rights from its TLS certificate); None keeps accepting free of it
        self.identify: Callable[[Any, Peer], None] | None = None
        #: peer id -> its connection, for every open one
        self.links: dict[int, GearmanConnection] = {}
        self.loop: Any = None
        self.closing = False
        self._flush_scheduled = False
        #: where replies are written from (read_done)
        self.mode = FlushMode()
        self.reads = 0  # reads since the last flush, or (inline) since the probing read
        self._until_probe = PROBE_EVERY
        self._probe_scheduled = False
        self._probe_callback: Callable[[], None] = self._probe
        self._timer: Any = None
        self._timer_at = -1.0  # deadline of the armed timer; < 0: none armed
        # Bound once: call_soon takes it every iteration.
        self._flush_callback: Callable[[], None] = self._flush_and_check

    def connection(self) -> GearmanConnection:
        """Protocol factory for ``loop.create_server``."""
        return GearmanConnection(self)

    def refuse(self, transport: Any) -> None:
        """Close a connection accepted past ``max_connections``.

        Accepting and closing (rather than leaving it in the listen backlog) tells the
        peer at once and keeps the backlog free for the moment a slot opens; the
        connection never reaches the broker, so it costs nothing once closed. Logged
        at most once a second with the count, so a connection storm cannot flood the log.
        """
        transport.close()
        self.refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= 1.0:
            log.warning("%d connections open (--max-connections): closed %d new "
                        "connection(s)", len(self.links), self.refused)
            self.refused = 0
            self._refusal_logged = now

    def flush(self) -> None:
        """Write every peer's pending output: one write per peer, urgent ones first.

        A peer is urgent (``Peer.urgent``) when its output holds a JOB_ASSIGN or a NOOP:
        a worker holds one job at a time, so throughput is (workers) / (its JOB_ASSIGN ->
        WORK_COMPLETE + GRAB_JOB round trip), and a sleeping worker does nothing until
        its NOOP arrives, while a client has jobs in flight and does not wait on one
        reply. Each loopback write runs the receiver's TCP work and wake-up inside the
        system call, so the order of the writes is the order in which the peers can act.
        A worker's JOB_ASSIGN does not even wait for this flush (``read_done``).
        A NO_JOB is not urgent: at depth 1 it would otherwise delay the client's
        WORK_COMPLETE, which the next submission waits on. Measured 2026-12-01 (gload,
        interleaved, medians; docs/architecture.md): sync 37.1k -> 40.8k jobs/s and
        coalesce 134k -> 153k for writing workers first, polls per sync job 0.60 -> 0.35.
        """
        broker = self.broker
        if not broker.dirty:
            return
        dirty = broker.take_dirty()
        rest = False
        for peer in dirty:
            if peer.out:
                if peer.urgent:
                    self._write(peer)
                else:
                    rest = True
        if rest:
            for peer in dirty:
                if peer.out:
                    self._write(peer)

    def _write(self, peer: Peer) -> None:
        """One write of everything queued for ``peer``, as ``bytes`` (uvloop wraps
        anything else in a cast memoryview per write)."""
        data = peer.take_output()
        link = self.links.get(peer.id)
        if link is not None:
            link.write(data)

    def read_done(self, link: GearmanConnection, peer: Peer) -> None:
        """A read was acted on: get its replies written, at the end of this loop
        iteration or now (:class:`FlushMode`)."""
        self.reads += 1
        self.read_since_tick = True
        if not self.mode.inline:
            if peer.urgent and peer.gates is None:
                # A worker's JOB_ASSIGN (or the NOOP answering its PRE_SLEEP) leaves now
                # rather than at the flush: the worker waits on it (see flush), and
                # nothing else is added for a worker that was just given a job. Its
                # NO_JOB waits for the flush like any other reply: a worker told there
                # is nothing is not on anyone's critical path, and a client's reply is.
                link.write(peer.take_output())
            self.after_batch()
            return
        self._flush_now()
        if self.busy_poll > 0.0 and not self._flush_scheduled:
            self.after_batch()  # the busy poll's ticks (_spin)
        self._until_probe -= 1
        if self._until_probe <= 0 and not self._probe_scheduled:
            self._until_probe = PROBE_EVERY
            self._probe_scheduled = True
            self.reads = 1  # this one and those after it, in this iteration
            loop = self.loop
            if loop is None:
                loop = self.loop = asyncio.get_running_loop()
            loop.call_soon(self._probe_callback)

    def _probe(self) -> None:
        """First thing in the iteration after the probing read's: how many reads it had
        from the probing one on."""
        self._probe_scheduled = False
        self.mode.probe(self.reads)
        self.reads = 0

    def after_batch(self) -> None:
        """The broker changed (a read, a store completion, a timer): schedule the flush,
        which runs after this iteration's I/O callbacks, before the loop waits again."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = self.loop
            if loop is None:
                loop = self.loop = asyncio.get_running_loop()
            loop.call_soon(self._flush_callback)

    def _flush_and_check(self) -> None:
        self._flush_scheduled = False
        reads = self.reads
        if reads and not self.mode.inline:
            self.reads = 0
            self.mode.iteration(reads)
        self._flush_now()
        if self.busy_poll > 0.0 and not self.closing:
            self._spin()

    def _spin(self) -> None:
        """Busy polling: run the flush callback again next iteration, so the loop polls
        without sleeping, until ``busy_poll`` seconds pass without a read.

        A round trip at depth 1 is mostly this VM putting processes to sleep and waking
        them (a halted virtual CPU woken by an interrupt): with the server's CPU kept
        busy between the hops of a job, gload depth 1 went from 5.6k to 12.2k jobs/s and
        p50 178 -> 75 us (gearmand 6.1k, 166 us), for one core kept busy while a stream
        of jobs lasts and nothing once it stops (docs/benchmarks.md). The clock is read
        only in ticks with no read, when the loop has nothing else to do.
        """
        if self.read_since_tick:
            self.read_since_tick = False
            self._spin_until = 0.0
        else:
            now = self.monotonic()
            if self._spin_until == 0.0:
                self._spin_until = now + self.busy_poll
            elif now >= self._spin_until:
                self._spin_until = 0.0
                return
        self.after_batch()

    def _flush_now(self) -> None:
        """Write all pending output, arm the timer, act on hang-ups, stalls, shutdown."""
        self.flush()
        broker = self.broker
        # The job-timer heap and wake_at (schedule slots, kept outcomes' expiry, which
        # would otherwise never fire on an idle server): two reads, no call per flush.
        deadline: float = broker.timers[0][0] if broker.timers else -1.0
        wake: float = broker.wake_at
        if wake > 0.0 and (deadline < 0.0 or wake < deadline):
            deadline = wake
        if deadline >= 0.0 and (self._timer_at < 0 or deadline < self._timer_at):
            self._arm_timer(deadline)
        if broker.hangups:
            self._hang_up()
        if broker.stalled:
            self._hold_back()
        request = broker.shutdown_request
        if request is not None and not self.closing:
            self.closing = True
            self.on_shutdown(request)

    def _hang_up(self) -> None:
        """Close the sockets of the connections the broker dropped (already forgotten
        by it: their ``connection_lost`` finds nothing left to do)."""
        broker = self.broker
        peers = broker.hangups
        broker.hangups = []
        for peer in peers:
            link = self.links.pop(peer.id, None)
            if link is not None and link.transport is not None:
                link.transport.close()

    def _hold_back(self) -> None:
        """Stop reading the peers whose batch stopped with replies waiting (their
        replies were just written), and go on with each batch in a later iteration --
        at once if its transport has room, else when ``resume_writing`` says so."""
        broker = self.broker
        peers = broker.stalled
        broker.stalled = []
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        for peer in peers:
            link = self.links.get(peer.id)
            if link is None or peer.backlog is None:
                continue
            link.transport.pause_reading()
            if not link.writing_paused:
                loop.call_soon(link.continue_backlog)

    def _arm_timer(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = self.loop
        if loop is None:
            loop = self.loop = asyncio.get_running_loop()
        self._timer_at = deadline
        self._timer = loop.call_later(max(0.0, deadline - self.broker.clock()),
                                      self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = -1.0
        self.broker.run_timers()
        self.after_batch()

    def cancel_timer(self) -> None:
        """Stop the pending timer callback (server close)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = -1.0


class GearmanConnection:
    """One accepted socket: bytes in through the codec, packets into the broker.

    Protocol callbacks rather than a stream reader task: no task switch and no ``await``
    per read.
    """

    #: The transport's bound ``write``, set by connection_made (a connection is listed
    #: in Pump.links from then on): compiled code calls a method of an untyped object
    #: by a name lookup on every call, a bound method directly.
    write: Callable[[bytes], None]

    def __init__(self, pump: Pump) -> None:
        self.pump = pump
        self.broker = pump.broker
        self.reader = PacketReader(max_packet_size=pump.max_packet_size, budget=pump.budget)
        self.peer: Peer | None = None
        self.transport: Any = None
        self.writing_paused = False  # between pause_writing and resume_writing

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        pump = self.pump
        if pump.max_connections and len(pump.links) >= pump.max_connections:
            pump.refuse(transport)  # self.peer stays None: every callback ignores it
            return
        sock = transport.get_extra_info("socket")
        peername = transport.get_extra_info("peername") or ("", 0)
        fd = -1
        if sock is not None:
            fd = sock.fileno()
            self.pump.tune_socket(sock)
        peer = self.broker.connect(str(peername[0]), int(peername[1]), fd)
        identify = pump.identify
        if identify is not None:
            identify(transport, peer)
        self.peer = peer
        self.write = transport.write
        self.pump.links[peer.id] = self

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            return
        try:
            packets = self.reader.feed(data)
        except ProtocolError as exc:
            self._reject(peer, exc)
            return
        if not packets:  # inside a packet: nothing to act on yet
            if self.reader.buffered > BIG_BODY_STEP:
                self.transport.pause_reading()
                pump = self.pump
                loop = pump.loop
                if loop is None:
                    loop = pump.loop = asyncio.get_running_loop()
                loop.call_soon(self.read_on)
            return
        if len(packets) <= BATCH_PACKETS:
            self.broker.handle_packets(peer, packets)
        else:  # a huge read: the rest in later iterations, other peers between
            self.broker.handle_first(peer, packets)
        self.pump.read_done(self, peer)

    def _reject(self, peer: Peer, error: ProtocolError) -> None:
        """Unframeable input: act on the packets before it, answer ERROR, close."""
        self.broker.handle_packets(peer, error.packets)
        log.info("closing %s:%d: %s", peer.host, peer.port, error.message)
        self.broker._send(peer, error_packet(error.code, error.message))
        self.pump.flush()
        self.transport.close()

    def expire_packet(self, timeout: float) -> None:
        """Its started packet was not completed in time (``--packet-timeout``)."""
        peer = self.peer
        if peer is not None and not self.transport.is_closing():
            self._reject(peer, ProtocolError(
                ErrorCode.TIMEOUT, f"packet not completed within {timeout:g} s"))

    def eof_received(self) -> bool | None:
        return None  # close our side too (asyncio.Protocol's default)

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is None:
            return
        self.reader.discard()  # its partial packet's bytes go back to the budget
        pump = self.pump
        pump.links.pop(peer.id, None)
        self.broker.disconnect(peer)
        pump.after_batch()

    def pause_writing(self) -> None:
        # The peer is not reading its replies: stop reading its requests until it does,
        # so one slow client cannot make the server buffer without bound.
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.transport is not None and not self.transport.is_closing():
            peer = self.peer
            if peer is not None and peer.backlog is not None:
                self.continue_backlog()  # reading resumes once the backlog is done
            else:
                self.transport.resume_reading()

    def read_on(self) -> None:
        """Read again after a large body's step (``BIG_BODY_STEP``), unless reading
        stays paused for another reason (replies backed up, a backlog)."""
        peer = self.peer
        if (peer is not None and not peer.closed and not self.writing_paused
                and peer.backlog is None and not self.transport.is_closing()):
            self.transport.resume_reading()

    def continue_backlog(self) -> None:
        """Act on more of a batch stopped for its admin replies (Broker._admin_lines);
        read again once none is left."""
        peer = self.peer
        if peer is None or peer.closed or self.writing_paused or self.transport.is_closing():
            return
        self.broker.resume(peer)
        if peer.backlog is None:
            self.transport.resume_reading()
        self.pump.after_batch()
