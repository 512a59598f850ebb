"""Draw docs/benchmarks.png from a benchmark run (the JSON written by run.py --json).

Three panels share the workload axis: gearshift/gearmand throughput ratio (the line at
1.0 is parity, the issue's target), absolute jobs/s of both servers on a log scale, and
peak RSS.  The ratio panel comes first because it is the question a reader asks.

    python benchmarks/chart.py results.json docs/benchmarks.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLORS = {"gearmand": "#7f7f7f", "gearshift": "#1f77b4"}


def _side(row: Mapping[str, Any], server: str, key: str) -> float:
    value = row["sides"].get(server, {}).get(key)
    return float(value) if value else 0.0


def draw(rows: Sequence[Mapping[str, Any]], out: Path, title: str = "") -> None:
    """Render the chart for ``rows`` (the ``rows`` list of a run's JSON) into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(r["name"]) for r in rows][::-1]
    ordered = list(rows)[::-1]
    ys = list(range(len(names)))
    fig, (ax_ratio, ax_jobs, ax_rss) = plt.subplots(
        1, 3, figsize=(15, 0.42 * len(names) + 1.8), sharey=True,
        gridspec_kw={"width_ratios": [1.1, 1.3, 1.0]})
    ratios = [float(r["ratio"]) if r.get("ratio") else 0.0 for r in ordered]
    # Log scale centred on parity: 0.5x and 2x are equally far from the line, and one
    # 60x row does not flatten every other bar.  Bars grow from 1.0 towards the value.
    shown = [v for v in ratios if v > 0] or [1.0]
    lo, hi = min(min(shown), 0.5) / 1.6, max(max(shown), 2.0) * 1.6
    ax_ratio.barh(ys, [v - 1.0 if v else 0.0 for v in ratios], left=1.0,
                  color=["#2ca02c" if v >= 1.0 else "#ff7f0e" for v in ratios])
    ax_ratio.set_xscale("log")
    ax_ratio.set_xlim(lo, hi)
    ax_ratio.axvline(1.0, color="black", linestyle="--", linewidth=1)
    for y, v in zip(ys, ratios, strict=True):
        ax_ratio.text(v if v else 1.0, y, f" {v:.2f}x " if v else " n/a", va="center",
                      ha="left" if v >= 1.0 or not v else "right", fontsize=8)
    ax_ratio.set_xlabel("gearshift / gearmand jobs/s, log scale (right of 1 = faster)")
    ax_ratio.set_yticks(ys, names)
    height = 0.38
    for i, server in enumerate(("gearmand", "gearshift")):
        off = (i - 0.5) * height
        jobs = [_side(r, server, "jobs_per_s") for r in ordered]
        rss = [_side(r, server, "rss_mb") for r in ordered]
        ax_jobs.barh([y + off for y in ys], jobs, height, label=server, color=COLORS[server])
        ax_rss.barh([y + off for y in ys], rss, height, label=server, color=COLORS[server])
    ax_jobs.set_xscale("log")
    ax_jobs.set_xlabel("jobs/s (log scale)")
    ax_jobs.legend(loc="lower right", fontsize=8)
    ax_rss.set_xlabel("server peak RSS, MB")
    for ax in (ax_ratio, ax_jobs, ax_rss):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title or "gearshift vs gearmand -t 0 (median of repeats)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("results", type=Path, help="JSON written by run.py --json")
    parser.add_argument("out", type=Path, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.results.read_text())
        rows = data["rows"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"chart: cannot read results from {args.results}: {exc}", file=sys.stderr)
        return 2
    draw(rows, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
