"""Run the workload matrix: fresh server per measurement, servers interleaved, medians.

Order matters on a shared 2-core machine: background noise drifts, so the two servers are
measured back to back for each workload and the order flips on every repeat (gearmand
first on even repeats, gearshift first on odd ones).  Each row reports the median of the
repeats for every metric.  A failed measurement (server crash, protocol error, timeout) is
recorded with its error text and the run goes on; it never stops the other rows.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.loadgen import LoadError, LoadResult, build_tools, run_step
from harness.servers import SERVERS, ServerUnavailable, cpu_seconds, make_server, peak_rss_kb
from harness.services import ServiceError, StoreService, make_service
from harness.workloads import Target, Workload


@dataclass
class Sample:
    """One measurement: one server, one workload, one repeat."""

    server: str
    workload: str
    repeat: int
    result: LoadResult | None = None
    rss_kb: int = 0
    cpu_s: float = 0.0  # server CPU (user + system) during the timed step only
    cpu_user_s: float = 0.0  # the user-space part of cpu_s
    prepare_secs: float = 0.0
    prepare_jobs: int = 0  # jobs the untimed prepare steps completed (or queued)
    error: str | None = None
    skipped: str | None = None
    then: LoadResult | None = None  # the workload's second timed step (fill10m's drain)


@dataclass
class Side:
    """Medians for one server on one workload (None where nothing succeeded)."""

    jobs: int | None = None
    jobs_per_s: float | None = None
    secs: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    rss_mb: float | None = None
    cpu_s: float | None = None
    cpu_us_per_job: float | None = None
    user_us_per_job: float | None = None
    register_secs: float | None = None
    then_jobs_per_s: float | None = None
    runs: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Row:
    """One table row: the workload, both sides, the ratio and the verdict on targets."""

    name: str
    title: str
    sides: dict[str, Side]
    ratio: float | None = None
    p50_ratio: float | None = None
    targets: list[dict[str, object]] = field(default_factory=list)


def _median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return statistics.median(vals) if vals else None


def summarise(samples: list[Sample]) -> Side:
    """Median of every metric over the successful samples."""
    ok = [s for s in samples if s.result is not None]
    side = Side(runs=len(ok), errors=[s.error for s in samples if s.error],
                skipped=next((s.skipped for s in samples if s.skipped), None))
    if not ok:
        return side
    res = [s.result for s in ok if s.result is not None]
    side.jobs = res[0].jobs
    side.jobs_per_s = _median(r.jobs_per_s for r in res)
    side.secs = _median(r.secs for r in res)
    side.p50_us = _median(r.p50_us for r in res)
    side.p99_us = _median(r.p99_us for r in res)
    side.register_secs = _median(r.register_secs for r in res)
    side.then_jobs_per_s = _median(s.then.jobs_per_s for s in ok if s.then is not None)
    side.rss_mb = _median(s.rss_kb / 1024 for s in ok)
    side.cpu_s = _median(s.cpu_s for s in ok)
    side.cpu_us_per_job = _median(s.cpu_s / s.result.jobs * 1e6 for s in ok if s.result)
    side.user_us_per_job = _median(s.cpu_user_s / s.result.jobs * 1e6 for s in ok if s.result)
    return side


def judge(target: Target, row: Row) -> dict[str, object]:
    """Whether gearshift meets ``target`` on this row: met True/False, or None (n/a)."""
    gs = row.sides.get("gearshift", Side())
    verdict: dict[str, object] = {"target": target.describe(), "met": None, "note": ""}
    if target.at_jobs is not None and gs.jobs is not None and gs.jobs != target.at_jobs:
        verdict["note"] = f"only judged at {target.at_jobs:,} jobs"
        return verdict
    value = {
        "ratio_min": row.ratio, "p50_ratio_max": row.p50_ratio,
        "secs_max": gs.secs, "rss_max_mb": gs.rss_mb,
    }[target.kind]
    if value is None:
        verdict["note"] = "no measurement"
        return verdict
    minimum = target.kind == "ratio_min"
    verdict["met"] = value >= target.value if minimum else value <= target.value
    verdict["value"] = value
    return verdict


def make_row(workload: Workload, samples: list[Sample], servers: Iterable[str]) -> Row:
    sides = {s: summarise([x for x in samples if x.server == s]) for s in servers}
    row = Row(workload.name, workload.title, sides)
    gm, gs = sides.get("gearmand"), sides.get("gearshift")
    if gm and gs and gm.jobs_per_s and gs.jobs_per_s:
        row.ratio = gs.jobs_per_s / gm.jobs_per_s
    if gm and gs and gm.p50_us and gs.p50_us:
        row.p50_ratio = gs.p50_us / gm.p50_us
    row.targets = [judge(t, row) for t in workload.targets]
    return row


def measure(server: str, workload: Workload, service: StoreService, repeat: int,
            tools: dict[str, Path], gearshift_args: Sequence[str] = ()) -> Sample:
    """Start ``server`` fresh, run the prepare steps, time the measured step, stop it.

    ``gearshift_args`` go to every gearshift server after the workload's own options."""
    sample = Sample(server, workload.name, repeat)
    limit = workload.gearmand_max_jobs
    if server == "gearmand" and limit is not None and workload.measure.jobs > limit:
        sample.skipped = (f"gearmand's queue commits one transaction per job: "
                          f"{workload.measure.jobs:,} jobs would take hours (run with "
                          f"--scale to compare at {limit:,} or fewer)")
        return sample
    try:
        extra = ([*workload.serve_args, *gearshift_args] if server == "gearshift"
                 else None)
        proc = make_server(server, service.fresh(), extra)
    except ServerUnavailable as exc:
        sample.skipped = str(exc)
        return sample
    except ServiceError as exc:
        sample.error = str(exc)
        return sample
    try:
        with proc:
            try:
                for step in workload.prepare:
                    prepared = run_step(step, tools, proc.host, proc.port)
                    sample.prepare_secs += prepared.secs
                    sample.prepare_jobs += prepared.jobs
                user0, sys0 = cpu_seconds(proc.pid)
                sample.result = run_step(workload.measure, tools, proc.host, proc.port)
                sample.rss_kb = peak_rss_kb(proc.pid)
                user1, sys1 = cpu_seconds(proc.pid)
                sample.cpu_user_s = user1 - user0
                sample.cpu_s = sample.cpu_user_s + sys1 - sys0
                if workload.then is not None:
                    sample.then = run_step(workload.then, tools, proc.host, proc.port)
                    sample.rss_kb = peak_rss_kb(proc.pid)  # the peak over both steps
            except LoadError as exc:
                # The server's own log says why it closed a connection or sent ERROR;
                # read it now, before the context manager deletes its directory.
                exit_status = proc.proc.poll() if proc.proc is not None else None
                raise LoadError(f"{exc}\n[server exit status: {exit_status}; log tail]\n"
                                f"{proc.read_log()[-1500:]}") from exc
    except (LoadError, RuntimeError, OSError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
        sample.result = None
    return sample


def run_matrix(workloads: list[Workload], repeats: int, servers: tuple[str, ...] = SERVERS,
               log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
               gearshift_args: Sequence[str] = ()) -> tuple[list[Row], list[Sample]]:
    """Measure every workload on every server ``repeats`` times; return rows and samples."""
    tools = build_tools()
    services: dict[str, StoreService] = {}
    samples: list[Sample] = []
    rows: list[Row] = []
    try:
        for workload in workloads:
            mine: list[Sample] = []
            if workload.store not in services:
                service = make_service(workload.store)
                try:
                    service.start()
                except ServiceError as exc:
                    log(f"[{workload.name}] store unavailable: {exc}")
                    mine = [Sample(s, workload.name, 0, error=str(exc)) for s in servers]
                    samples += mine
                    rows.append(make_row(workload, mine, servers))
                    continue
                services[workload.store] = service
            n = min(repeats, workload.max_repeats or repeats)
            for rep in range(n):
                order = servers if rep % 2 == 0 else tuple(reversed(servers))
                for server in order:
                    s = measure(server, workload, services[workload.store], rep, tools,
                                gearshift_args)
                    log(_describe(s))
                    mine.append(s)
            samples += mine
            rows.append(make_row(workload, mine, servers))
    finally:
        for service in services.values():
            service.stop()
    return rows, samples


def _describe(s: Sample) -> str:
    head = f"[{s.workload} #{s.repeat} {s.server}]"
    if s.skipped:
        return f"{head} skipped: {s.skipped}"
    if s.result is None:
        return f"{head} FAILED: {s.error}"
    r = s.result
    then = (f", then {s.then.mode} {s.then.jobs_per_s:,.0f} jobs/s in {s.then.secs:.2f} s"
            if s.then is not None else "")
    return (f"{head} {r.jobs_per_s:,.0f} jobs/s in {r.secs:.2f} s, p50 {r.p50_us:.0f} us, "
            f"p99 {r.p99_us:.0f} us{then}, peak RSS {s.rss_kb / 1024:.1f} MB")


def to_json(rows: list[Row], samples: list[Sample]) -> dict[str, object]:
    """Plain-data form of a run (for ``--json`` and for the chart)."""
    return {"rows": [asdict(r) for r in rows], "samples": [asdict(s) for s in samples]}
