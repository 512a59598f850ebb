"""The two in-process benchmarks (codec + broker, no sockets) run and report, at tiny
sizes. A smoke test of the tools, not of speed or memory: those are read from their
output by people comparing two commits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _report(script: str, *args: str) -> dict[str, str]:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    return dict(field.split("=", 1) for field in line.split() if "=" in field)


@pytest.mark.parametrize(("share", "functions"), [("1", "1"), ("4", "1"), ("1", "10")])
def test_dispatch_bench_reports_cpu_per_job(share: str, functions: str) -> None:
    # The bench loops until every job's WORK_COMPLETE reached its client, so finishing
    # (within the timeout) means the broker routed all of them.
    report = _report("dispatch_bench.py", "--jobs", "2000", "--repeats", "1", "--share", share,
                     "--functions", functions)
    assert report["jobs"] == "2000"
    assert report["share"] == share
    assert report["functions"] == functions
    assert float(report["server_us_per_job"]) > 0


@pytest.mark.parametrize("unique", [True, False])
def test_memory_bench_queues_every_job_and_reports_bytes(unique: bool) -> None:
    # memory_bench itself fails unless every job ended up queued.
    args = ["--jobs", "5000"] + ([] if unique else ["--no-unique"])
    report = _report("memory_bench.py", *args)
    assert report["jobs"] == "5000"
    assert report["unique"] == str(unique)
    assert int(report["peak_rss_mb"]) >= int(report["rss_mb"]) > 0
