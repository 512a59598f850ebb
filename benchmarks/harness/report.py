"""Present a run: the terminal table, the machine description and the docs section.

The table in docs/benchmarks.md lives between two marker comments so that
``run.py --write-docs`` can replace it without touching the prose around it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from gearshift.testing import gearmand_path
from harness.runner import Row, Side

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

HEADERS = ["workload", "gearmand jobs/s", "gearshift jobs/s", "ratio gs/gm",
           "p50 us gm / gs", "p99 us gm / gs", "CPU us/job gm / gs",
           "user CPU us/job gm / gs", "peak RSS MB gm / gs",
           "target", "met"]


def _num(v: float | None, fmt: str = ",.0f") -> str:
    # 0 means "not measured" (gload's bg mode records no latency); no real value is 0.
    return "-" if not v else format(v, fmt)


def _pair(gm: Side, gs: Side, attr: str, fmt: str = ",.0f") -> str:
    return f"{_num(getattr(gm, attr), fmt)} / {_num(getattr(gs, attr), fmt)}"


def _cpu_pair(gm: Side, gs: Side, attr: str) -> str:
    # Unlike latency, 0 CPU is a real reading (less than one 10 ms clock tick).
    def one(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"
    return f"{one(getattr(gm, attr))} / {one(getattr(gs, attr))}"


def _verdict(row: Row) -> tuple[str, str]:
    if not row.targets:
        return "", ""
    names = "; ".join(str(t["target"]) for t in row.targets)
    marks = ["yes" if t["met"] is True else "NO" if t["met"] is False else "n/a"
             for t in row.targets]
    notes = sorted({str(t["note"]) for t in row.targets if t["met"] is None and t["note"]})
    return names, "; ".join(marks) + (f" ({'; '.join(notes)})" if notes else "")


def _jobs_cell(side: Side, row: Row) -> str:
    if side.jobs_per_s is None:
        return "n/a" if side.skipped else "failed" if side.errors else "-"
    cell = _num(side.jobs_per_s)
    if row.name.startswith("fill") and side.secs is not None:
        cell += f" ({side.secs:.1f} s)"
    if side.then_jobs_per_s is not None:
        cell += f"; drain {_num(side.then_jobs_per_s)}"
    return cell


def cells(row: Row) -> list[str]:
    """The table cells of one row, as strings."""
    gm, gs = row.sides.get("gearmand", Side()), row.sides.get("gearshift", Side())
    target, met = _verdict(row)
    return [row.name, _jobs_cell(gm, row), _jobs_cell(gs, row),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            _pair(gm, gs, "p50_us"), _pair(gm, gs, "p99_us"),
            _cpu_pair(gm, gs, "cpu_us_per_job"), _cpu_pair(gm, gs, "user_us_per_job"),
            _pair(gm, gs, "rss_mb", ".0f"),
            target, met]


def text_table(rows: list[Row]) -> str:
    """Fixed-width table for the terminal."""
    grid = [HEADERS, *[cells(r) for r in rows]]
    widths = [max(len(line[i]) for line in grid) for i in range(len(HEADERS))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
           for line in grid]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    """The same table in Markdown, plus one line per row saying what it measures."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    lines += ["", "What each row runs:", ""]
    lines += [f"- `{r.name}`: {r.title}" for r in rows]
    failures = [(r.name, s, e) for r in rows for s, side in r.sides.items()
                for e in side.errors[:1]]
    if failures:
        lines += ["", "Failed measurements (first error per server and row):", ""]
        lines += [f"- `{n}` on {s}: {_gist(e)}" for n, s, e in failures]
    skipped = [(r.name, s, side.skipped) for r in rows for s, side in r.sides.items()
               if side.skipped]
    if skipped:
        lines += ["", "Not applicable:", ""]
        lines += [f"- `{n}` on {s}: {why}" for n, s, why in skipped]
    return "\n".join(lines)


def _gist(error: str) -> str:
    """First and last line of an error (a server traceback's cause is on its last line)."""
    lines = [ln.strip() for ln in error.splitlines() if ln.strip()]
    gist = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
    return gist[:400].replace("|", "/")


def _cmd(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()
    except OSError:
        return "?"


def machine(gearshift_args: str = "") -> dict[str, str]:
    """Where and when the numbers were taken, and with which build and flags."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gm = gearmand_path()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{mem_gb:.0f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gearmand": _cmd([gm, "--version"]) if gm else "not installed",
        "gearshift commit": _cmd(["git", "-C", str(Path(__file__).resolve().parents[2]),
                                  "rev-parse", "--short", "HEAD"]),
        # The servers run `python -m gearshift`: the installed build (see README).
        "gearshift build": _cmd([sys.executable, "-m", "gearshift", "--version"]),
        "gearshift flags": gearshift_args or "defaults (besides each row's own)",
    }


def results_section(rows: list[Row], meta: dict[str, str], options: str) -> str:
    """The generated part of docs/benchmarks.md."""
    facts = "\n".join(f"- {k}: {v}" for k, v in meta.items())
    return (f"{BEGIN}\n_Generated by `python benchmarks/run.py {options}`._\n\n{facts}\n\n"
            f"{markdown_table(rows)}\n{END}")


def write_docs(path: Path, section: str) -> None:
    """Replace the marked results section of ``path``.

    Raises:
        ValueError: the file lacks the begin/end markers (so nothing would be replaced).
    """
    text = path.read_text()
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"{path} has no '{BEGIN}' ... '{END}' section to replace")
    path.write_text(text[:start] + section + text[stop + len(END):])
