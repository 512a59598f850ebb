"""Memory per queued background job, measured on the broker alone (no sockets).

The ``fill`` row of run.py measures the whole server's peak RSS with a million queued
jobs, which takes a minute per server; this script isolates what the broker keeps per job
(the job record, its payload and unique, the handle and coalescing indexes, the queue
entry) in a few seconds, so a change to the job representation can be measured before
and after:

    python benchmarks/memory_bench.py                  # 1M jobs with unique keys
    python benchmarks/memory_bench.py --no-unique      # plain SUBMIT_JOB_BG
    python benchmarks/memory_bench.py --jobs 200000 --payload 1024

The traffic is gfill's ``fill`` shape: 8 clients each pipeline 64 SUBMIT_JOB_BG packets
per read, unique keys ``k0``, ``k1``..., a 64-byte payload, and nobody takes the jobs.
Printed: bytes per job from the process's resident set (after minus before, so the
interpreter's own baseline is excluded) and the peak resident set.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

from gearshift._build import build_name
from gearshift.broker import Broker, BrokerConfig
from gearshift.protocol import REQ, PacketReader, PacketType, encode


def resident_bytes() -> int:
    """The current resident set size, from /proc/self/statm."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--no-unique", action="store_true", help="submit without unique keys")
    args = parser.parse_args()

    broker = Broker(BrokerConfig(handle_prefix=b"H:vm:"))
    clients = [broker.connect() for _ in range(8)]
    readers = {c.id: PacketReader() for c in clients}
    data = b"x" * args.payload
    batch = 64
    gc.collect()
    before = resident_bytes()
    started = time.perf_counter()
    submitted = 0
    while submitted < args.jobs:
        for client in clients:
            n = min(batch, args.jobs - submitted)
            if n <= 0:
                break
            raw = b"".join(
                encode(PacketType.SUBMIT_JOB_BG, b"parked",
                       b"" if args.no_unique else b"k%d" % (submitted + i), data, magic=REQ)
                for i in range(n))
            submitted += n
            broker.handle_packets(client, readers[client.id].feed(raw))
            client.out.clear()
        broker.take_dirty()
    secs = time.perf_counter() - started
    gc.collect()
    after = resident_bytes()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queued = sum(sum(f.queued) for f in broker.functions.values())
    assert queued == args.jobs, f"only {queued} of {args.jobs} jobs queued"
    print(f"build={build_name()} jobs={args.jobs} unique={not args.no_unique} "
          f"payload={args.payload} secs={secs:.2f} "
          f"bytes_per_job={(after - before) / args.jobs:.0f} "
          f"rss_mb={after / 2**20:.0f} peak_rss_mb={peak_kb / 1024:.0f} "
          f"baseline_mb={before / 2**20:.0f}")


if __name__ == "__main__":
    main()
