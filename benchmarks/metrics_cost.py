"""What the HTTP listener costs the Gearman port: sync, bg and coalesce under gload with
the listener off, against the same build with ``--http-port`` on and ``/metrics``
scraped every second while the load runs (issue 16's target: within 3%).

    python benchmarks/metrics_cost.py [--site DIR] [--only sync,bg,coalesce] [--rounds 6]
                                      [--jobs 200000] [--interval 1.0]

One build (``--site``: a ``pip install --target`` directory, the compiled build as
benchmarks/ab.py makes it; default: the importable one), two configurations, fresh
servers, measured back to back with the order flipping every round. Printed: median
jobs/s and server user CPU per job (steadier than jobs/s on a shared machine) of each
side, their ratio, and how many scrapes the listener answered.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ab import WORKLOADS
from harness.loadgen import Gload, build_tools, run_step
from harness.servers import cpu_seconds

from gearshift.testing import GearshiftServer, free_port


class Scraper(threading.Thread):
    """GET /metrics every ``interval`` seconds until stopped; counts good answers."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.done = threading.Event()
        self.scrapes = 0
        self.failures = 0

    def run(self) -> None:
        while not self.done.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as reply:
                    reply.read()
                    self.scrapes += reply.status == 200
            except OSError:
                self.failures += 1


def measure(env: dict[str, str] | None, step: Gload, tools: dict[str, Path],
            interval: float | None) -> tuple[float, float, int]:
    """(jobs/s, server user CPU us per job, scrapes) of one fresh server; ``interval``
    None: the listener off."""
    args: list[str] = []
    http_port = 0
    if interval is not None:
        http_port = free_port()
        args = ["--http-port", str(http_port)]
    server = GearshiftServer(store="memory", extra_args=args, env=env, startup_timeout=60)
    server.start()
    scraper = Scraper(http_port, interval) if interval is not None else None
    try:
        assert server.proc is not None
        if scraper is not None:
            scraper.start()
        user0, _ = cpu_seconds(server.proc.pid)
        result = run_step(step, tools, server.host, server.port)
        user1, _ = cpu_seconds(server.proc.pid)
    finally:
        if scraper is not None:
            scraper.done.set()
            scraper.join(15)
        server.stop()
    if scraper is not None and scraper.failures:
        raise RuntimeError(f"{scraper.failures} scrapes failed")
    return (result.jobs_per_s, (user1 - user0) / max(result.jobs, 1) * 1e6,
            scraper.scrapes if scraper is not None else 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", help="gearshift installed with pip install --target")
    parser.add_argument("--only", default="sync,bg,coalesce")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs per run")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    opts = parser.parse_args()
    names = [n for n in opts.only.split(",") if n]
    env = {"PYTHONPATH": opts.site} if opts.site else None
    tools = build_tools()
    sides: dict[str, float | None] = {"off": None, "scraped": opts.interval}
    samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for round_no in range(opts.rounds):
        order = ("off", "scraped") if round_no % 2 == 0 else ("scraped", "off")
        for name in names:
            step = WORKLOADS[name](opts.jobs)
            for side in order:
                sample = measure(env, step, tools, sides[side])
                samples.setdefault((name, side), []).append(sample)
                print(f"round {round_no + 1} {name:9} {side:8}: {sample[0]:9.0f} jobs/s "
                      f"{sample[1]:6.2f} us user/job  {sample[2]} scrapes", flush=True)
    print(f"\nmedians of {opts.rounds} rounds, {opts.jobs} jobs per run; scraped = "
          f"--http-port, GET /metrics every {opts.interval:g} s")
    print(f"{'workload':10} {'off jobs/s':>10} {'scraped':>10} {'ratio':>6}   "
          f"{'off us/job':>10} {'scraped':>8} {'ratio':>6}")
    for name in names:
        off, on = samples[(name, "off")], samples[(name, "scraped")]
        r_off = statistics.median(s[0] for s in off)
        r_on = statistics.median(s[0] for s in on)
        c_off = statistics.median(s[1] for s in off)
        c_on = statistics.median(s[1] for s in on)
        print(f"{name:10} {r_off:10.0f} {r_on:10.0f} {r_on / r_off:6.3f}   {c_off:10.2f} "
              f"{c_on:8.2f} {c_on / c_off:6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
