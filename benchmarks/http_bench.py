"""gearmand's HTTP protocol, gearshift against gearmand ``-r http``, under ``ab``.

    python benchmarks/http_bench.py [--site DIR] [--rounds 5] [-n 20000] [-c 8]
                                    [--foreground]

The same ``ab`` load (Debian's apache2-utils: ``apt-get install apache2-utils``) is put on
each server in turn, the order rotating every round so drift on a shared machine hits all
alike: ``POST /bench`` with a 64-byte body, background by default (identical bodies
coalesce on both servers), or foreground with one worker per server (``--foreground``).
Rows: gearmand (it closes after every answer), gearshift with a new connection per
request (``ab`` without ``-k``, as gearmand serves) and gearshift with keep-alive
(``ab -k``). Printed per row: median requests/s and server CPU (user, system) in
microseconds per request. ``--site`` runs gearshift from a ``pip install --target``
directory (the compiled build, as benchmarks/ab.py builds it); default: the importable one.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.servers import cpu_seconds

from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, free_port


def ab(port: int, body: Path, requests: int, concurrency: int, keep_alive: bool,
       background: bool) -> tuple[float, int]:
    """One ab run: (requests/s, failed requests)."""
    command = ["ab", "-q", "-n", str(requests), "-c", str(concurrency), "-p", str(body),
               "-T", "application/octet-stream"]
    if background:
        command += ["-H", "X-Gearman-Background: true"]
    if keep_alive:
        command.append("-k")
    out = subprocess.run([*command, f"http://127.0.0.1:{port}/bench"], check=True,
                         capture_output=True, text=True, timeout=600).stdout
    rate = re.search(r"Requests per second:\s+([\d.]+)", out)
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if rate is None or failed is None:
        raise RuntimeError(f"ab printed no rate:\n{out}")
    return float(rate.group(1)), int(failed.group(1)) + int(non_2xx.group(1) if non_2xx
                                                             else 0)


@contextmanager
def worker(server: ServerProcess) -> Iterator[None]:
    """A worker for ``bench`` answering its payload, in a child process."""
    code = ("import sys; from gearshift.client import Worker\n"
            "w = Worker([sys.argv[1]]); w.register('bench', lambda job: job.data)\n"
            "w.run()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, server.address])
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", help="gearshift installed with pip install --target")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--foreground", action="store_true",
                        help="foreground submissions, one worker per server")
    opts = parser.parse_args()
    if shutil.which("ab") is None:
        parser.error("needs ab: apt-get install apache2-utils")
    env = {"PYTHONPATH": opts.site} if opts.site else None
    background = not opts.foreground
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "body"
        body.write_bytes(b"x" * 64)
        gm_port, gs_port = free_port(), free_port()
        gearmand = stack.enter_context(GearmandServer(
            extra_args=["-r", "http", "--http-port", str(gm_port), "--threads", "0"]))
        gearshift = stack.enter_context(GearshiftServer(
            extra_args=["--http-port", str(gs_port), "-r", "http"], env=env,
            startup_timeout=60))
        if opts.foreground:
            stack.enter_context(worker(gearmand))
            stack.enter_context(worker(gearshift))
        rows: dict[str, tuple[ServerProcess, int, bool]] = {
            "gearmand -r http": (gearmand, gm_port, False),
            "gearshift, new connection each": (gearshift, gs_port, False),
            "gearshift, keep-alive (ab -k)": (gearshift, gs_port, True),
        }
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in rows}
        run: Callable[[int, bool], tuple[float, int]] = lambda port, keep: ab(  # noqa: E731
            port, body, opts.requests, opts.concurrency, keep, background)
        for row in rows.values():  # warm up: connections, the first job of the function
            run(row[1], row[2])
        names = list(rows)
        for round_no in range(opts.rounds):
            for name in names[round_no % 3:] + names[:round_no % 3]:
                server, port, keep = rows[name]
                assert server.proc is not None
                user0, sys0 = cpu_seconds(server.proc.pid)
                rate, failed = run(port, keep)
                user1, sys1 = cpu_seconds(server.proc.pid)
                per = 1e6 / opts.requests
                samples[name].append((rate, (user1 - user0) * per, (sys1 - sys0) * per))
                print(f"round {round_no + 1} {name:32} {rate:9.0f} req/s  "
                      f"{(user1 - user0) * per:6.1f} us user  {(sys1 - sys0) * per:6.1f} "
                      f"us sys  failed {failed}", flush=True)
    print(f"\nmedians of {opts.rounds} rounds, ab -n {opts.requests} -c {opts.concurrency}, "
          f"{'background' if background else 'foreground'}")
    base = statistics.median(s[0] for s in samples["gearmand -r http"])
    for name, rows_samples in samples.items():
        rate = statistics.median(s[0] for s in rows_samples)
        print(f"{name:32} {rate:9.0f} req/s ({rate / base:4.2f}x)  "
              f"{statistics.median(s[1] for s in rows_samples):6.1f} us user  "
              f"{statistics.median(s[2] for s in rows_samples):6.1f} us sys per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
