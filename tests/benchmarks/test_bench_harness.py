"""The benchmark harness works end to end, at tiny job counts.

This is a smoke test of the *measurement* machinery, not of speed: it builds the C load
tools, starts real gearshift (and gearmand, when installed) servers on free loopback ports,
runs a handful of workloads with a few hundred jobs each, and checks that the JSON parses,
every job of every run completed and the table lists every workload.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gearshift.testing import gearmand_path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

from harness.loadgen import LoadError, LoadResult  # noqa: E402
from harness.report import BEGIN, END, write_docs  # noqa: E402
from harness.servers import peak_rss_kb  # noqa: E402
from harness.workloads import all_workloads, select  # noqa: E402

SMOKE = ["sync", "bg", "latency", "coalesce", "funcs10", "fill", "queued100k", "drain100k",
         "fill10m", "durable-sqlite"]
SMOKE_ARGS = ["--quick", "--scale", "0.01", "--repeats", "1", "--only", ",".join(SMOKE)]

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _servers() -> list[str]:
    return ["gearmand", "gearshift"] if gearmand_path() else ["gearshift"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), *SMOKE_ARGS, "--servers", ",".join(_servers()),
         "--json", str(out)],
        capture_output=True, text=True, timeout=400, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"run.py failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    data["stdout"] = proc.stdout
    return data


@needs_gcc
@pytest.mark.timeout(420)
def test_every_run_completed_all_its_jobs(smoke_run: dict[str, Any]) -> None:
    expected = {w.name: w.measure.jobs // (w.measure.clients or 1) * (w.measure.clients or 1)
                for w in select(all_workloads(quick=True, scale=0.01), ",".join(SMOKE))}
    rows = {r["name"]: r for r in smoke_run["rows"]}
    assert sorted(rows) == sorted(SMOKE)
    for name, row in rows.items():
        for server in _servers():
            side = row["sides"][server]
            assert side["errors"] == [], (name, server, side["errors"])
            assert side["runs"] == 1, (name, server)
            assert side["jobs"] == expected[name], (name, server, side["jobs"])
            assert side["jobs_per_s"] > 0
            assert side["rss_mb"] > 1, "peak RSS of a live server is at least a megabyte"
    samples = smoke_run["samples"]
    assert len(samples) == len(SMOKE) * len(_servers())
    assert all(s["result"]["jobs"] > 0 for s in samples)
    # fill10m's second step drained the queue its first step filled, on the same server.
    for sample in samples:
        if sample["workload"] == "fill10m":
            assert sample["then"]["mode"] == "drain"
            assert sample["then"]["jobs"] == sample["result"]["jobs"]
    assert rows["fill10m"]["sides"]["gearshift"]["then_jobs_per_s"] > 0


@needs_gcc
@pytest.mark.timeout(420)
def test_latency_is_measured_where_it_exists(smoke_run: dict[str, Any]) -> None:
    rows = {r["name"]: r for r in smoke_run["rows"]}
    for server in _servers():
        lat = rows["latency"]["sides"][server]
        assert 0 < lat["p50_us"] <= lat["p99_us"]
        # the parked jobs were really queued before the timed run (drain100k could not
        # have completed its jobs otherwise: nothing else submits them). Counted in jobs,
        # not seconds: a smoke-size fill can take less than gfill's millisecond
        # resolution. gfill rounds the count down to a multiple of its client count.
        for name in ("queued100k", "drain100k"):
            workload = select(all_workloads(quick=True, scale=0.01), name)[0]
            want = sum(step.jobs for step in workload.prepare)
            prepared = [s for s in smoke_run["samples"]
                        if s["workload"] == name and s["server"] == server]
            assert 0.9 * want <= prepared[0]["prepare_jobs"] <= want


@needs_gcc
@pytest.mark.timeout(420)
def test_table_lists_every_workload(smoke_run: dict[str, Any]) -> None:
    lines = smoke_run["stdout"].splitlines()
    assert lines[0].split()[0] == "workload"
    assert [ln.split()[0] for ln in lines[2:]] == SMOKE
    if len(_servers()) == 2:
        assert "x" in lines[2].split()[3], "sync row has a gearshift/gearmand ratio"


@needs_gcc
@pytest.mark.timeout(420)
def test_chart_draws_from_run_json(smoke_run: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from chart import draw

    png = tmp_path / "chart.png"
    draw(smoke_run["rows"], png)
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000


def test_report_line_parses() -> None:
    line = ("mode=sync jobs=50000 clients=8 workers=4 depth=16 payload=64 secs=0.989 "
            "jobs_per_s=50568 p50_us=2433 p99_us=4770")
    r = LoadResult.parse(line)
    assert (r.mode, r.jobs, r.secs, r.jobs_per_s, r.p50_us, r.p99_us) == (
        "sync", 50000, 0.989, 50568.0, 2433.0, 4770.0)
    assert r.register_secs == 0.0


def test_truncated_report_is_an_error() -> None:
    with pytest.raises(LoadError, match="unparseable"):
        LoadResult.parse("mode=sync jobs=50000 secs=0.9")


def test_unknown_workload_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown workload.*nope.*choose from sync"):
        select(all_workloads(), "sync,nope")


def test_quick_and_scale_shrink_counts() -> None:
    full = {w.name: w.measure.jobs for w in all_workloads()}
    quick = {w.name: w.measure.jobs for w in all_workloads(quick=True)}
    assert full["fill"] == 1_000_000
    assert quick["fill"] == 100_000
    assert all(quick[n] < full[n] for n in full)
    with pytest.raises(ValueError, match="scale"):
        all_workloads(scale=0)


def test_peak_rss_of_a_real_process() -> None:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    rss_now = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
    assert peak_rss_kb(os.getpid()) >= rss_now > 0


def test_write_docs_replaces_only_the_marked_section(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text(f"intro\n{BEGIN}\nold table\n{END}\noutro\n")
    write_docs(doc, f"{BEGIN}\nnew table\n{END}")
    assert doc.read_text() == f"intro\n{BEGIN}\nnew table\n{END}\noutro\n"
    doc.write_text("no markers here\n")
    with pytest.raises(ValueError, match=r"no .* section"):
        write_docs(doc, "x")
