"""Benchmark gearshift against gearmand: one command, fresh servers, interleaved, medians.

    python benchmarks/run.py                  # full set, 3 repeats (minutes of CPU)
    python benchmarks/run.py --quick          # counts / 10, for development
    python benchmarks/run.py --only sync,latency --repeats 5
    python benchmarks/run.py --json out.json  # raw samples and medians
    python benchmarks/run.py --write-docs     # also rewrite docs/benchmarks.md + .png

Every workload starts each server fresh on a free loopback port (gearmand as
``gearmand -t 0``), runs the C load generator (built here with gcc), reads the server's
peak RSS from /proc, and stops it.  Servers alternate order between repeats.  Load runs
stop by themselves (120 s, 600 s for million-job fills).  See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.loadgen import LoadError
from harness.report import machine, results_section, text_table, write_docs
from harness.runner import run_matrix, to_json
from harness.servers import SERVERS
from harness.workloads import all_workloads, select

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
CHART = ROOT / "docs" / "benchmarks.png"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="gearshift vs gearmand benchmark runner")
    p.add_argument("--quick", action="store_true", help="job counts divided by 10")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply job counts (e.g. 0.01 for a smoke test)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per workload (median)")
    p.add_argument("--only", help="comma-separated workload names")
    p.add_argument("--servers", default=",".join(SERVERS),
                   help=f"comma-separated subset of {','.join(SERVERS)}")
    p.add_argument("--gearshift-args", default="",
                   help="extra `gearshift serve` options for every gearshift server, "
                        "e.g. '--busy-poll 0' (recorded with the results)")
    p.add_argument("--json", type=Path, help="write raw samples and medians here")
    p.add_argument("--write-docs", action="store_true",
                   help=f"rewrite the table in {DOC.relative_to(ROOT)} and the chart")
    p.add_argument("--list", action="store_true", help="list workloads and exit")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.scale <= 0:
        p.error("--scale must be positive")
    servers = tuple(s.strip() for s in args.servers.split(",") if s.strip())
    bad = [s for s in servers if s not in SERVERS]
    if bad or not servers:
        p.error(f"--servers takes a subset of {','.join(SERVERS)}, got {args.servers!r}")
    args.servers = servers
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workloads = all_workloads(quick=args.quick, scale=args.scale)
    try:
        workloads = select(workloads, args.only)
    except ValueError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for w in workloads:
            print(f"{w.name:18} {w.title}")
        return 0
    try:
        rows, samples = run_matrix(workloads, args.repeats, args.servers,
                                   gearshift_args=shlex.split(args.gearshift_args))
    except LoadError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    print(text_table(rows))
    data = to_json(rows, samples)
    data["machine"] = machine(args.gearshift_args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1))
    if args.write_docs:
        from chart import draw

        options = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
        write_docs(DOC, results_section(rows, machine(args.gearshift_args), options))
        draw(data["rows"], CHART)  # type: ignore[arg-type]
        print(f"wrote {DOC} and {CHART}", file=sys.stderr)
    completed = all(side.runs for r in rows for side in r.sides.values())
    return 0 if completed else 1


if __name__ == "__main__":
    raise SystemExit(main())
