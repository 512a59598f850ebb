"""Sync jobs over TLS against the same over plaintext, on one gearshift build.

gearmand cannot be the reference here: Debian's gearmand 1.1.20 accepts ``--ssl`` and
serves plaintext (docs/operations.md, "TLS"), so there is no gearmand TLS figure to
compare with. What this measures is what ``--ssl`` costs gearshift: gload (benchmarks/
gload.c, built here with ``-DGLOAD_TLS`` against OpenSSL) drives sync jobs against a
fresh server per run, plaintext and TLS runs interleaved, and prints medians of jobs/s,
latency and the server's CPU (user + system) per job.

    python benchmarks/tls_bench.py                    # the installed build
    PYTHONPATH=src python benchmarks/tls_bench.py     # the source tree
    python benchmarks/tls_bench.py --jobs 50000 --rounds 3

Needs gcc, OpenSSL's headers (Debian: libssl-dev) and trustme (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import subprocess
import tempfile
from pathlib import Path

from gearshift._build import build_name
from gearshift.testing import GearshiftServer, make_tls_files

BENCH = Path(__file__).resolve().parent
#: (label, clients, workers, depth): gload's sync shape and a lone client at depth 1.
SHAPES = [("sync 8x16, 4 workers", 8, 4, 16), ("depth 1, 1 worker", 1, 1, 1)]


def build_gload() -> Path:
    binary = BENCH / "gload-tls"
    source = BENCH / "gload.c"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-DGLOAD_TLS", "-o", str(binary), str(source),
                        "-lssl", "-lcrypto"], check=True)
    return binary


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(gload: Path, tls_args: list[str] | None, jobs: int, shape: tuple[str, int, int, int],
        payload: int) -> dict[str, float]:
    _, clients, workers, depth = shape
    env = dict(os.environ, GLOAD_TLS="1" if tls_args else "0")
    server = GearshiftServer(extra_args=tls_args or [])
    if tls_args:  # the readiness probe speaks TLS too
        server.tls = ssl.create_default_context()
        server.tls.check_hostname = False
        server.tls.verify_mode = ssl.CERT_NONE
    with server:
        before = cpu_seconds(server.pid)
        out = subprocess.run([str(gload), server.host, str(server.port), "sync", str(jobs),
                              str(clients), str(workers), str(depth), str(payload)],
                             env=env, capture_output=True, text=True, timeout=200, check=True)
        cpu = cpu_seconds(server.pid) - before
    fields = dict(token.split("=", 1) for token in out.stdout.split() if "=" in token)
    done = int(fields["jobs"])
    return {"jobs_per_s": float(fields["jobs_per_s"]), "p50_us": float(fields["p50_us"]),
            "p99_us": float(fields["p99_us"]), "cpu_us_per_job": cpu / done * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--payload", type=int, default=64)
    args = parser.parse_args()
    gload = build_gload()
    import gearshift

    print(f"gearshift {build_name()} from {os.path.dirname(gearshift.__file__)}; "
          f"{args.jobs:,} jobs per run, {args.rounds} interleaved rounds, medians", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_tls_files(tmp)
        print("| shape | transport | jobs/s | p50 us | p99 us | server CPU us/job |")
        print("|---|---|---|---|---|---|")
        for shape in SHAPES:
            jobs = args.jobs if shape[3] > 1 else args.jobs // 10
            samples: dict[str, list[dict[str, float]]] = {"plaintext": [], "TLS": []}
            for _ in range(args.rounds):
                samples["plaintext"].append(run(gload, None, jobs, shape, args.payload))
                samples["TLS"].append(run(gload, files.serve_args(), jobs, shape,
                                          args.payload))
            for transport, runs in samples.items():
                med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                print(f"| {shape[0]} | {transport} | {med['jobs_per_s']:,.0f} | "
                      f"{med['p50_us']:.0f} | {med['p99_us']:.0f} | "
                      f"{med['cpu_us_per_job']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
