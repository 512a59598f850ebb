"""Start each Gearman server fresh for one measurement, and read its peak memory.

gearmand runs as ``gearmand -t 0`` (the issue's "best setting": one thread that does I/O
and dispatch, the fastest on a 2-core machine); gearshift as ``python -m gearshift serve``.
Both bind a free loopback port.  Peak RSS is the kernel's high-water mark (``VmHWM`` in
``/proc/PID/status``), summed over the server and any child processes, so a short spike
between two samples cannot be missed.
"""

from __future__ import annotations

import os
from pathlib import Path

from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, gearmand_path
from harness.services import StoreArgs

#: The servers compared, in the order used on even-numbered repeats.
SERVERS = ("gearmand", "gearshift")

#: gearmand options for every run: single-threaded, quiet log.
GEARMAND_ARGS = ["--threads", "0", "--verbose", "ERROR"]


class ServerUnavailable(RuntimeError):
    """This server cannot run this workload (not installed, or no such queue plugin)."""


def make_server(kind: str, store: StoreArgs, extra: list[str] | None = None) -> ServerProcess:
    """An unstarted server process of ``kind`` pointed at ``store``.

    Raises:
        ServerUnavailable: gearmand is not installed or has no plugin for this store.
        ValueError: unknown ``kind``.
    """
    if kind == "gearmand":
        if gearmand_path() is None:
            raise ServerUnavailable("gearmand not installed (apt-get install gearman-job-server)")
        if store.gearmand is None:
            raise ServerUnavailable("gearmand has no queue plugin for this store")
        return GearmandServer(extra_args=[*GEARMAND_ARGS, *store.gearmand, *(extra or [])],
                              startup_timeout=60)
    if kind == "gearshift":
        return GearshiftServer(store=store.gearshift, extra_args=extra or [],
                               startup_timeout=60)
    raise ValueError(f"unknown server {kind!r}; choose from {', '.join(SERVERS)}")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # field 4 is the parent pid; the command name (field 2) may contain spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kb(pid: int) -> int:
    """Peak resident memory (KiB) of ``pid`` and its descendants, 0 if it is gone."""
    total, todo, seen = 0, [pid], set[int]()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _hwm_kb(current)
        todo.extend(_children(current))
    return total


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by ``pid``; (0.0, 0.0) if it is gone.

    The split matters: both servers pay about the same kernel time per job for loopback
    TCP, so the user-space share is where an implementation differs.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0, 0.0
    fields = stat.rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime (fields 14, 15)
