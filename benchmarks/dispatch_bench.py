"""CPU cost of the sans-I/O hot path (codec + broker) per sync job, with no sockets.

The end-to-end benchmark (run.py) mixes this cost with the event loop's and the kernel's;
this one isolates what gearshift's own Python code spends, so a change to the codec or
the dispatcher can be measured before and after in seconds:

    python benchmarks/dispatch_bench.py            # 200k jobs, best of 5
    python benchmarks/dispatch_bench.py --jobs 50000 --repeats 3
    python benchmarks/dispatch_bench.py --functions 10 --concurrency bench_0=1
    python benchmarks/dispatch_bench.py --background --keep-results 3600

The traffic is gload's sync shape: 8 clients keep 16 submits in flight, 4 workers loop
GRAB_JOB -> JOB_ASSIGN -> WORK_COMPLETE (+ the next GRAB_JOB in the same read), and every
peer's output is taken after each round, as Server.flush does once per loop iteration.
With ``--background`` the clients submit SUBMIT_JOB_BG instead (each answered by a
JOB_CREATED) and keep 16 jobs each not yet done by a worker; ``--keep-results`` sets how
long their outcomes are kept (the server's default is an hour, 0 keeps none). Only the
server side is timed (parsing each read, dispatching it, taking the dirty
peers); the simulated peers' own encoding and parsing is not.
"""

from __future__ import annotations

import argparse
import struct
import time

from gearshift._build import build_name
from gearshift.broker import Broker, BrokerConfig, Peer
from gearshift.broker._flow import FlowRules, parse_concurrency
from gearshift.protocol import REQ, Packet, PacketReader, PacketType, encode

P = PacketType
GRAB = encode(P.GRAB_JOB, magic=REQ)
_REPLY_HEADER = struct.Struct(">4sII")


def _parse_replies(data: bytes) -> list[Packet]:
    """The simulated peers' side of the wire. Not the server's PacketReader, so that a
    profile which counts PacketReader.feed (the callgrind recipe in
    docs/architecture.md) counts only the server's parsing."""
    packets: list[Packet] = []
    pos = 0
    while pos < len(data):
        _magic, ptype, size = _REPLY_HEADER.unpack_from(data, pos)
        body = data[pos + 12 : pos + 12 + size]
        packets.append((ptype, body.split(b"\0") if body else []))
        pos += 12 + size
    return packets


class Simulation:
    """A broker with client and worker peers whose traffic is played by plain calls."""

    def __init__(self, clients: int, workers: int, payload: int, share: int,
                 functions: int = 1, concurrency: tuple[str, ...] = (),
                 background: bool = False, keep_results: float = 3600.0,
                 timing: bool = False) -> None:
        flow = FlowRules([parse_concurrency(spec) for spec in concurrency])
        self.broker = Broker(BrokerConfig(handle_prefix=b"H:bench:", flow=flow,
                                          keep_results=keep_results, timing=timing))
        self.submit_type = P.SUBMIT_JOB_BG if background else P.SUBMIT_JOB
        # Every worker can do every function; submissions go round robin over them
        # (gfill's ``funcs`` shape).
        self.names = [b"bench"] if functions == 1 else [b"bench_%d" % i
                                                         for i in range(functions)]
        self.data = b"x" * payload
        self.share = share
        self.submitted = 0
        self.clients = [self.broker.connect() for _ in range(clients)]
        self.workers = [self.broker.connect() for _ in range(workers)]
        peers = self.clients + self.workers
        self.server_side = {p.id: PacketReader() for p in peers}
        self.spent_ns = 0
        self.clock = time.perf_counter_ns

    def submits(self, n: int) -> bytes:
        """``n`` SUBMIT_JOBs; with ``share`` > 1, every ``share`` consecutive submissions
        carry the same unique key (gload's ``uniq`` mode uses 4)."""
        packets = []
        for _ in range(n):
            unique = b"u%d" % (self.submitted // self.share) if self.share > 1 else b""
            name = self.names[self.submitted % len(self.names)]
            packets.append(encode(self.submit_type, name, unique, self.data, magic=REQ))
            self.submitted += 1
        return b"".join(packets)

    def feed(self, peer: Peer, raw: bytes) -> None:
        """One read arriving from ``peer``: the timed server work."""
        t0 = self.clock()
        self.broker.handle_packets(peer, self.server_side[peer.id].feed(raw))
        self.spent_ns += self.clock() - t0

    def take(self, peer: Peer) -> list[Packet]:
        """What the server wrote to ``peer``, as the peer parses it (untimed)."""
        if not peer.out:
            return []
        return _parse_replies(peer.take_output())

    def work(self, worker: Peer) -> int:
        """Answer what ``worker`` was sent; returns the number of jobs it completed."""
        completed = 0
        for ptype, fields in self.take(worker):
            if ptype == P.JOB_ASSIGN:
                done = encode(P.WORK_COMPLETE, fields[0], fields[2].upper(), magic=REQ)
                self.feed(worker, done + GRAB)
                completed += 1
            elif ptype == P.NO_JOB:
                self.feed(worker, encode(P.PRE_SLEEP, magic=REQ))
            elif ptype == P.NOOP:
                self.feed(worker, GRAB)
        return completed

    def flush(self) -> None:
        t0 = self.clock()
        self.broker.take_dirty()
        self.spent_ns += self.clock() - t0


def run(jobs: int, clients: int = 8, workers: int = 4, depth: int = 16,
        payload: int = 64, share: int = 1, functions: int = 1,
        concurrency: tuple[str, ...] = (), background: bool = False,
        keep_results: float = 3600.0, timing: bool = False) -> float:
    """Seconds the server side spends on ``jobs`` submissions (sync unless
    ``background``)."""
    sim = Simulation(clients, workers, payload, share, functions, concurrency, background,
                     keep_results, timing)
    for w in sim.workers:
        can_do = b"".join(encode(P.CAN_DO, name, magic=REQ) for name in sim.names)
        sim.feed(w, can_do + GRAB)
    outstanding = dict.fromkeys((c.id for c in sim.clients), 0)
    submitted = done = 0
    while done < jobs:
        for c in sim.clients:
            n = min(depth - outstanding[c.id], jobs - submitted)
            if n > 0:
                sim.feed(c, sim.submits(n))
                outstanding[c.id] += n
                submitted += n
        completed = sum(sim.work(w) for w in sim.workers)
        if background:
            # Nobody tells a background job's client that it ended: count what the
            # workers completed and let the clients submit as many again, in turn.
            for c in sim.clients:
                sim.take(c)
            done += completed
            for c in sim.clients:
                freed = min(outstanding[c.id], completed)
                outstanding[c.id] -= freed
                completed -= freed
        else:
            for c in sim.clients:
                finished = sum(1 for ptype, _ in sim.take(c) if ptype == P.WORK_COMPLETE)
                outstanding[c.id] -= finished
                done += finished
        sim.flush()
    return sim.spent_ns / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description="codec + broker CPU per sync job")
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--share", type=int, default=1, metavar="N",
                        help="N consecutive submissions share a unique key (coalesce: 4)")
    parser.add_argument("--functions", type=int, default=1, metavar="N",
                        help="every worker does N functions, jobs spread over them")
    parser.add_argument("--concurrency", action="append", default=[], metavar="FUNC=N",
                        help="a flow-control limit, as gearshift serve --concurrency (the "
                             "functions are bench, or bench_0 .. bench_N-1)")
    parser.add_argument("--background", action="store_true",
                        help="SUBMIT_JOB_BG instead of SUBMIT_JOB")
    parser.add_argument("--keep-results", type=float, default=3600.0, metavar="SECONDS",
                        help="as gearshift serve --keep-results (default 3600; 0 keeps none)")
    parser.add_argument("--timing", action="store_true",
                        help="queue-wait and run-time histograms, as with --http-port")
    args = parser.parse_args()
    if args.functions < 1:
        parser.error("--functions must be at least 1")
    best = min(run(args.jobs, payload=args.payload, share=args.share,
                   functions=args.functions, concurrency=tuple(args.concurrency),
                   background=args.background, keep_results=args.keep_results,
                   timing=args.timing)
               for _ in range(args.repeats))
    print(f"dispatch_bench build={build_name()!r} jobs={args.jobs} payload={args.payload} "
          f"share={args.share} functions={args.functions} "
          f"concurrency={','.join(args.concurrency) or '-'} "
          f"background={args.background} keep_results={args.keep_results:g} "
          f"timing={args.timing} "
          f"server_us_per_job={best / args.jobs * 1e6:.2f}")


if __name__ == "__main__":
    main()
