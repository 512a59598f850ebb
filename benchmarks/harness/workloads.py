"""What is measured: the issue-5 workloads, their sizes and their targets.

Every workload is one timed load step, optionally preceded by untimed ``prepare`` steps
(for example filling the queue with jobs nobody will take, to see whether throughput
holds up with a deep queue).  Sizes are the "full" ones of the issue; ``--quick`` divides
them by ten and ``--scale`` shrinks them further (the smoke test runs at a few hundred
jobs).  Targets that are stated for an exact size (1M jobs) are only judged at that size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from harness.loadgen import Gfill, Gload, LoadStep

TargetKind = Literal["ratio_min", "p50_ratio_max", "secs_max", "rss_max_mb"]

#: Full-size job counts.  Chosen so a full run of each step takes seconds, not minutes,
#: on gearmand (the 1M fill is the exception: it is the point of that workload).
FULL = {
    "sync": 300_000, "latency": 20_000, "payload4k": 150_000, "coalesce": 200_000,
    "funcs": 100_000, "funcs10000": 20_000, "fill": 1_000_000, "queued": 100_000,
    "durable": 10_000, "fill10m": 10_000_000,
}

#: gearshift's memory budget in the ``fill10m`` row (``serve --queue-memory``).
FILL10M_QUEUE_MEMORY = "256MiB"
#: Above this many jobs gearmand's SQLite queue is not run: it commits one transaction
#: per job (~500 jobs/s here, docs/benchmarks.md), so 10M would take ~6 hours.
GEARMAND_SQLITE_MAX_JOBS = 200_000

#: Stores for the durable workloads, in table order.
DURABLE_STORES = ("sqlite", "postgres", "redis", "memcached", "mysql")


@dataclass(frozen=True)
class Target:
    """A goal from issue 5 (or issue 20: depth-1 jobs/s and p50 at least gearmand's).

    Attributes:
        kind: ``ratio_min`` (gearshift/gearmand jobs/s at least ``value``),
            ``p50_ratio_max`` (gearshift/gearmand p50 at most ``value``), ``secs_max``
            (gearshift's timed step at most ``value`` seconds), ``rss_max_mb`` (gearshift
            peak RSS at most ``value`` MB).
        at_jobs: judge only when the timed step ran exactly this many jobs (else the row
            says the target does not apply at this size).
    """

    kind: TargetKind
    value: float
    at_jobs: int | None = None

    def describe(self) -> str:
        return {
            "ratio_min": f">= {self.value:g}x jobs/s",
            "p50_ratio_max": f"p50 <= {self.value:g}x",
            "secs_max": f"<= {self.value:g} s",
            "rss_max_mb": f"RSS <= {self.value:g} MB",
        }[self.kind]


@dataclass(frozen=True)
class Workload:
    """One row of the benchmark table.

    Attributes:
        name: short id used by ``--only``.
        title: what the row measures, with its size.
        measure: the timed load step.
        prepare: untimed steps run first against the same fresh server.
        store: ``memory`` or one of DURABLE_STORES.
        targets: goals judged on the medians.
        max_repeats: cap on repeats (the 1M-job rows are too slow to run three times).
        then: a second timed step on the same server after ``measure`` (``fill10m``:
            the drain of the queue it filled), reported beside it.
        serve_args: extra ``gearshift serve`` options for this row.
        gearmand_max_jobs: above this many jobs in ``measure`` gearmand is not run
            (reported as not applicable, with the reason).
    """

    name: str
    title: str
    measure: LoadStep
    prepare: tuple[LoadStep, ...] = ()
    store: str = "memory"
    targets: tuple[Target, ...] = field(default=())
    max_repeats: int | None = None
    then: LoadStep | None = None
    serve_args: tuple[str, ...] = ()
    gearmand_max_jobs: int | None = None


def _sizer(quick: bool, scale: float) -> dict[str, int]:
    div = 10 if quick else 1
    return {k: max(int(v // div * scale), 64) for k, v in FULL.items()}


def all_workloads(quick: bool = False, scale: float = 1.0) -> list[Workload]:
    """The workload table, sized for a full run, a ``--quick`` run or a scaled one."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    n = _sizer(quick, scale)
    fill = n["fill"]
    rows = [
        Workload("sync", f"sync, 8 clients x 16 in flight, 4 workers, 64 B ({n['sync']:,} jobs)",
                 Gload("sync", n["sync"]), targets=(Target("ratio_min", 1.0),)),
        Workload("bg", f"background, 8 x 16, 4 workers, 64 B ({n['sync']:,} jobs)",
                 Gload("bg", n["sync"]), targets=(Target("ratio_min", 1.0),)),
        Workload("latency", f"sync depth 1: 1 client, 1 worker, 64 B ({n['latency']:,} jobs)",
                 Gload("sync", n["latency"], clients=1, workers=1, depth=1),
                 targets=(Target("ratio_min", 1.0), Target("p50_ratio_max", 1.0))),
        Workload("payload4k", f"sync 8 x 16, 4 workers, 4 KiB ({n['payload4k']:,} jobs)",
                 Gload("sync", n["payload4k"], payload=4096),
                 targets=(Target("ratio_min", 1.0),)),
        Workload("coalesce", f"sync 8 x 16, every 4 submits share a unique ({n['coalesce']:,})",
                 Gload("uniq", n["coalesce"]), targets=(Target("ratio_min", 1.0),)),
    ]
    for funcs in (10, 1_000, 10_000):
        jobs = n["funcs10000"] if funcs == 10_000 else n["funcs"]
        rows.append(Workload(
            f"funcs{funcs}", f"sync 8 x 16, 4 workers x {funcs:,} CAN_DO each ({jobs:,} jobs)",
            Gfill("funcs", jobs, nfuncs=funcs, func="gfill_f")))
    rows.append(Workload(
        "fill", f"accept {fill:,} background jobs with unique keys, no workers",
        Gfill("fill", fill, depth=64, func="parked", limit_s=600),
        targets=(Target("secs_max", 10.0, at_jobs=1_000_000),
                 Target("rss_max_mb", 360.0, at_jobs=1_000_000)),
        max_repeats=1))
    for label, queued in (("0", 0), ("100k", fill // 10), ("1m", fill)):
        prep = (Gfill("fill", queued, depth=64, func="parked", keyprefix="q", limit_s=600),)
        rows.append(Workload(
            f"queued{label}",
            f"sync 8 x 16 with {queued:,} jobs parked on another function ({n['queued']:,} jobs)",
            Gload("sync", n["queued"]), prepare=prep if queued else (),
            max_repeats=1 if queued >= 1_000_000 or (quick and queued) else None))
    deep = fill // 10 // 8 * 8  # gfill splits jobs evenly over its 8 clients, so the
    # drain count must be a multiple of 8 to match exactly what the fill queued
    rows.append(Workload(
        "drain100k", f"4 workers drain {deep:,} already-queued background jobs",
        Gfill("drain", deep, func="parked", limit_s=120),
        prepare=(Gfill("fill", deep, depth=64, func="parked", keyprefix="q", limit_s=600),)))
    big = n["fill10m"] // 8 * 8  # a multiple of gfill's 8 clients (see drain100k)
    rows.append(Workload(
        "fill10m", f"accept {big:,} background jobs with unique keys on the SQLite store, "
        f"no workers (gearshift --queue-memory {FILL10M_QUEUE_MEMORY}); then 4 workers "
        "drain them",
        Gfill("fill", big, depth=64, func="parked", keyprefix="t", limit_s=7200),
        then=Gfill("drain", big, func="parked", limit_s=7200),
        store="sqlite", serve_args=("--queue-memory", FILL10M_QUEUE_MEMORY),
        targets=(Target("rss_max_mb", 1024.0, at_jobs=10_000_000),),
        max_repeats=1, gearmand_max_jobs=GEARMAND_SQLITE_MAX_JOBS))
    for store in DURABLE_STORES:
        rows.append(Workload(
            f"durable-{store}",
            f"background with unique keys, {store} store, 8 x 16, 4 workers ({n['durable']:,})",
            Gfill("bgu", n["durable"], func="durable", keyprefix="d", limit_s=300),
            store=store))
    return rows


def select(workloads: list[Workload], only: str | None) -> list[Workload]:
    """Keep the workloads named in a comma-separated ``--only`` list (all when None).

    Raises:
        ValueError: a name matches no workload (the message lists the valid names).
    """
    if not only:
        return workloads
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    names = {w.name for w in workloads}
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"unknown workload(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(w.name for w in workloads)}")
    return [w for w in workloads if w.name in wanted]
