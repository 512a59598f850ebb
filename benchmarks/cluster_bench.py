"""Aggregate durable throughput of 1 vs N gearshift servers sharing one PostgreSQL store.

Each server gets its own ``gfill bgu`` load (background jobs with unique keys, 8 clients
x 16 in flight, 4 workers: the ``durable-postgres`` shape of benchmarks/run.py) with an
equal share of the jobs; all loads start together, and the aggregate rate is the total
job count over the slowest load's wall time. Every server writes to the same tables, so
this shows what sharing the database (leases, fencing, one commit stream per server)
costs or gains. Prints numbers only; it is a benchmark, not a test.

Usage::

    python benchmarks/cluster_bench.py [--servers 1,3] [--jobs 12000] [--repeats 2]
        [--pg postgresql://postgres@127.0.0.1:5432/test]

On a 2-core machine N servers, PostgreSQL and the load tools share the cores, so the
aggregate cannot scale with N there; the point is that it does not fall below one
server's.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import time
import uuid

from harness.loadgen import Gfill, build_tools, run_step

from gearshift.testing import GearshiftServer

SUFFIXES = ("", "_meta", "_outcomes", "_schedules", "_leases")


async def _drop(pg: str, table: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg)
    try:
        await conn.execute("DROP TABLE IF EXISTS " + ", ".join(table + s for s in SUFFIXES))
    finally:
        await conn.close()


def measure(pg: str, count: int, jobs: int) -> float:
    """Aggregate jobs/s of ``count`` servers on one fresh table set."""
    table = "cbench" + uuid.uuid4().hex[:8]
    tools = build_tools()
    servers = [GearshiftServer(store=f"{pg}?table={table}") for _ in range(count)]
    try:
        for server in servers:
            server.start()
        share = jobs // count
        steps = [Gfill("bgu", share, func="durable", keyprefix=f"d{i}-", limit_s=300)
                 for i in range(count)]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            results = list(pool.map(lambda pair: run_step(pair[0], tools, pair[1].host,
                                                           pair[1].port),
                                    zip(steps, servers, strict=True)))
        elapsed = time.perf_counter() - started
        done = sum(r.jobs for r in results)
        return done / elapsed
    finally:
        for server in servers:
            server.__exit__(None, None, None)
        asyncio.run(_drop(pg, table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="1,3", help="server counts to compare")
    parser.add_argument("--jobs", type=int, default=12000, help="jobs per run, in all")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    counts = [int(c) for c in args.servers.split(",")]
    rates: dict[int, list[float]] = {c: [] for c in counts}
    for _ in range(args.repeats):
        for count in counts:  # interleaved, so machine noise hits every count alike
            rates[count].append(measure(args.pg, count, args.jobs))
            print(f"servers={count} jobs={args.jobs} jobs_per_s={rates[count][-1]:.0f}",
                  flush=True)
    for count in counts:
        runs = " / ".join(f"{r:,.0f}" for r in rates[count])
        print(f"{count} server(s) on one PostgreSQL store: {runs} jobs/s")


if __name__ == "__main__":
    main()
