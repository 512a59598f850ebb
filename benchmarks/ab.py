"""Interleaved A/B of two gearshift builds under gload: is a change free on the hot path?

    python benchmarks/ab.py --base HEAD~1 [--head WORKTREE|REV|SITE] [--only sync,bg,coalesce]
                            [--rounds 6] [--scale 1.0] [--head-args '--keep-results 0']

Each side is built the way users get it (``pip install --target``, so the hot path is
compiled by mypyc) from a git revision (a throw-away worktree) or, for ``--head``'s
default, from the working tree. Then, per round and workload, both servers are started
fresh and measured back to back, the order flipping every round so drift on this shared
2-core VM hits both alike. Printed: the median jobs/s and server user CPU per job of each
side and their ratio; the CPU figure is steadier than jobs/s here (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.loadgen import Gload, build_tools, run_step
from harness.servers import cpu_seconds

from gearshift.testing import GearshiftServer

ROOT = Path(__file__).resolve().parent.parent

#: Load shapes as benchmarks/run.py runs them (8 clients x 16 in flight, 4 workers, 64 B).
WORKLOADS = {
    "sync": lambda n: Gload("sync", n),
    "bg": lambda n: Gload("bg", n),
    "coalesce": lambda n: Gload("uniq", n),
    "payload4k": lambda n: Gload("sync", n, payload=4096),
    "latency": lambda n: Gload("sync", n // 20, clients=1, workers=1, depth=1),
}


def build(rev: str | None, into: Path) -> Path:
    """Install gearshift at ``rev`` (None: the working tree) into ``into``; returns it.

    A ``rev`` that names a directory holding an installed ``gearshift`` package (an
    earlier ``pip install --target``) is used as it is: repeated A/B runs of one change
    then skip the two mypyc builds (~2 minutes each here).
    """
    if rev is not None and (Path(rev) / "gearshift" / "__init__.py").is_file():
        return Path(rev).resolve()
    source = ROOT
    if rev is not None:
        source = into.with_name(into.name + "-src")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(source),
                        rev], check=True, capture_output=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", "--target", str(into), str(source)],
                       check=True)
    finally:
        if rev is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(source)], check=False, capture_output=True)
    return into


def measure(site: Path, args: list[str], step: Gload,
            tools: dict[str, Path]) -> tuple[float, float, float]:
    """One fresh server from ``site``: (jobs/s, server user CPU microseconds per job,
    p50 round trip in microseconds; 0 for background jobs)."""
    server = GearshiftServer(store="memory", extra_args=args, env={"PYTHONPATH": str(site)},
                             startup_timeout=60)
    server.start()
    try:
        assert server.proc is not None
        user0, _ = cpu_seconds(server.proc.pid)
        result = run_step(step, tools, server.host, server.port)
        user1, _ = cpu_seconds(server.proc.pid)
    finally:
        server.stop()
    return (result.jobs_per_s, (user1 - user0) / max(result.jobs, 1) * 1e6,
            float(result.p50_us or 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision of the A side, or "
                        "a directory with an installed build")
    parser.add_argument("--head", default=None, help="git revision of the B side "
                        "(default: the working tree)")
    parser.add_argument("--only", default="sync,bg,coalesce", help="comma-separated: "
                        + ", ".join(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=200_000, help="jobs per run")
    parser.add_argument("--base-args", default="", help="extra `serve` arguments, A side")
    parser.add_argument("--head-args", default="", help="extra `serve` arguments, B side")
    opts = parser.parse_args()
    names = [n for n in opts.only.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")
    tools = build_tools()
    with tempfile.TemporaryDirectory(prefix="gearshift-ab-") as tmp:
        sides = {
            "A": (build(opts.base, Path(tmp) / "a"), shlex.split(opts.base_args)),
            "B": (build(opts.head, Path(tmp) / "b"), shlex.split(opts.head_args)),
        }
        samples: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for round_no in range(opts.rounds):
            order = ("A", "B") if round_no % 2 == 0 else ("B", "A")
            for name in names:
                step = WORKLOADS[name](opts.jobs)
                for side in order:
                    site, args = sides[side]
                    sample = measure(site, args, step, tools)
                    samples.setdefault((name, side), []).append(sample)
                    print(f"round {round_no + 1} {name:9} {side}: {sample[0]:9.0f} jobs/s "
                          f"{sample[1]:6.2f} us user/job  p50 {sample[2]:7.0f} us", flush=True)
    print(f"\nA = {opts.base} {opts.base_args}".rstrip())
    print(f"B = {opts.head or 'working tree'} {opts.head_args}".rstrip())
    print(f"{'workload':10} {'A jobs/s':>10} {'B jobs/s':>10} {'B/A':>6}   "
          f"{'A us/job':>9} {'B us/job':>9} {'B/A':>6}   {'A p50':>7} {'B p50':>7} {'B/A':>6}")
    for name in names:
        a, b = samples[(name, "A")], samples[(name, "B")]
        ra = statistics.median(s[0] for s in a)
        rb = statistics.median(s[0] for s in b)
        ca = statistics.median(s[1] for s in a)
        cb = statistics.median(s[1] for s in b)
        pa = statistics.median(s[2] for s in a)
        pb = statistics.median(s[2] for s in b)
        p50 = f"   {pa:7.0f} {pb:7.0f} {pb / pa:6.3f}" if pa else ""
        print(f"{name:10} {ra:10.0f} {rb:10.0f} {rb / ra:6.3f}   {ca:9.2f} {cb:9.2f} "
              f"{cb / ca:6.3f}{p50}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
