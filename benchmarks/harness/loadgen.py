"""Build the C load generators and run them; each run prints one ``key=value`` line.

``gload`` (the project's shared load tool) drives sync, background and coalescing load on
one function; ``gfill`` drives the shapes gload cannot (a pre-filled queue, a drain,
thousands of functions per worker, background jobs with unique keys).  Both stop by
themselves after their timeout, and this module adds a hard subprocess timeout on top so a
wedged server can never hang a benchmark run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent

#: Tool name -> C source in benchmarks/.  Binaries are built next to it (git-ignored).
TOOLS = {"gload": "gload.c", "gfill": "gfill.c"}

#: gload gives up after 120 s on its own (hard-coded in gload.c).
GLOAD_LIMIT_S = 120

#: Extra seconds past a tool's own limit before the subprocess is killed.
KILL_GRACE_S = 30


class LoadError(RuntimeError):
    """A load tool failed: build error, protocol error, server ERROR or timeout."""


@dataclass(frozen=True)
class LoadResult:
    """What one load-tool run measured.

    Attributes:
        mode: the tool mode that ran (``sync``, ``bg``, ``fill``...).
        jobs: jobs completed (or accepted, for ``fill``).
        secs: wall time of the timed part.
        jobs_per_s: ``jobs / secs`` as printed by the tool.
        p50_us, p99_us: latency percentiles in microseconds (0 when the mode has none).
        register_secs: gfill ``funcs`` only: time for all CAN_DOs to be processed.
    """

    mode: str
    jobs: int
    secs: float
    jobs_per_s: float
    p50_us: float
    p99_us: float
    register_secs: float = 0.0

    @classmethod
    def parse(cls, line: str) -> LoadResult:
        """Parse a tool's report line; raises LoadError if a required field is missing."""
        fields: dict[str, str] = {}
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep:
                fields[key] = value
        try:
            return cls(
                mode=fields["mode"],
                jobs=int(fields["jobs"]),
                secs=float(fields["secs"]),
                jobs_per_s=float(fields["jobs_per_s"]),
                p50_us=float(fields["p50_us"]),
                p99_us=float(fields["p99_us"]),
                register_secs=float(fields.get("register_secs", "0")),
            )
        except (KeyError, ValueError) as exc:
            raise LoadError(f"unparseable load-tool report {line!r}: {exc}") from exc


@dataclass(frozen=True)
class Gload:
    """One gload run: ``gload HOST PORT MODE JOBS CLIENTS WORKERS DEPTH PAYLOAD``."""

    mode: str
    jobs: int
    clients: int = 8
    workers: int = 4
    depth: int = 16
    payload: int = 64

    tool = "gload"

    @property
    def limit_s(self) -> int:
        return GLOAD_LIMIT_S

    def argv(self, binary: Path, host: str, port: int) -> list[str]:
        return [str(binary), host, str(port), self.mode, str(self.jobs), str(self.clients),
                str(self.workers), str(self.depth), str(self.payload)]


@dataclass(frozen=True)
class Gfill:
    """One gfill run: ``gfill MODE HOST PORT -j JOBS ...`` (see the header of gfill.c)."""

    mode: str
    jobs: int
    clients: int = 8
    workers: int = 4
    depth: int = 16
    payload: int = 64
    func: str = "gfill_echo"
    nfuncs: int = 1
    keyprefix: str = "k"
    limit_s: int = 120

    tool = "gfill"

    def argv(self, binary: Path, host: str, port: int) -> list[str]:
        return [str(binary), self.mode, host, str(port), "-j", str(self.jobs),
                "-c", str(self.clients), "-w", str(self.workers), "-d", str(self.depth),
                "-s", str(self.payload), "-f", self.func, "-F", str(self.nfuncs),
                "-k", self.keyprefix, "-t", str(self.limit_s)]


LoadStep = Gload | Gfill


def build_tools(cc: str = "gcc") -> dict[str, Path]:
    """Compile each tool whose binary is missing or older than its source.

    Raises:
        LoadError: no C compiler, or the compile failed.
    """
    if shutil.which(cc) is None:
        raise LoadError(f"C compiler {cc!r} not found (apt-get install gcc)")
    built: dict[str, Path] = {}
    for name, source in TOOLS.items():
        src, binary = BENCH_DIR / source, BENCH_DIR / name
        if not binary.exists() or binary.stat().st_mtime < src.stat().st_mtime:
            proc = subprocess.run([cc, "-O2", "-o", str(binary), str(src)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise LoadError(f"building {name} failed:\n{proc.stderr}")
        built[name] = binary
    return built


def run_step(step: LoadStep, tools: dict[str, Path], host: str, port: int) -> LoadResult:
    """Run one load step against ``host:port`` and return its parsed report.

    Raises:
        LoadError: the tool exited non-zero (its stderr says why) or overran its limit.
    """
    argv = step.argv(tools[step.tool], host, port)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=step.limit_s + KILL_GRACE_S, env=dict(os.environ))
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{' '.join(argv)} did not stop within its limit") from exc
    if proc.returncode != 0:
        raise LoadError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise LoadError(f"{' '.join(argv)} printed nothing")
    return LoadResult.parse(lines[-1])
