"""Hostile loads against a real server, and what a well-behaved client sees meanwhile.

Issue 15 ("safe to expose") lists loads that took gearshift to gigabytes or stalled it
for everyone. For each, a fresh ``gearshift serve`` (in-memory store, defaults unless
the row says otherwise) is started, the load is applied for ``--duration`` seconds
while a separate process runs synchronous jobs through it (a client submits, a worker
of its own completes, one at a time, paced at ~2 ms), and the server's RSS is sampled
every 20 ms. Then the hostile peers leave and the RSS is read again once the server
settled. Printed: the well-behaved client's round trips (p50, p99, worst), the server's
RSS before, at its peak and after, and whether a new connection is answered after.

    python benchmarks/hostile.py                          # every load, the installed build
    PYTHONPATH=src python benchmarks/hostile.py           # the source tree (pure Python)
    python benchmarks/hostile.py --only a,f --duration 5

Loads (the issue's letters):

a. 3,000 pipelined ``show jobs`` over 20,000 queued jobs from a client that never reads;
b. 34 connections each sending 60 MiB of a declared 64 MiB SUBMIT_JOB body, then stalling;
c. 100,000 distinct function names (CAN_DO then CANT_DO: records with nothing in them);
d. 2,000 background jobs of 1 MiB and no worker (``--max-memory`` default: no limit;
   the d' row sets ``--max-memory 256MiB``);
e. function names full of control characters (5,000 submissions to 5,000 such names,
   a worker registering 1,000 of them, then ``status`` and ``workers`` read back);
f. file descriptors exhausted: the server runs under ``ulimit -n 256`` and the load keeps
   600 connections open (reopening those the server closes).

The issue's target: the well-behaved client's p99 under 50 ms during every load.
Results: docs/benchmarks.md, "Hostile loads".
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import select
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from gearshift._build import build_name
from gearshift.protocol import REQ, RES, PacketReader, PacketType, encode
from gearshift.testing import GearshiftServer

P = PacketType
MIB = 1 << 20


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """The server's peak RSS, read every 20 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))


#: Loaded into the server through PYTHONPATH (``sitecustomize``): once the server has
#: started, a 5 ms timer on its event loop writes every tick that came more than 5 ms
#: late to the file named by GEARSHIFT_LAG_FILE. So the table can tell the server's own
#: stalls from the probe's: on two shared cores the probe and the server also wait for
#: the CPU, which no server can help.
LAG_MONITOR = """
import builtins, os, sys, time
_import = builtins.__import__
_done = []
def _hooked(name, *args, **kwargs):
    module = _import(name, *args, **kwargs)
    server = sys.modules.get("gearshift.server._server")
    if not _done and server is not None and hasattr(server, "Server"):
        _done.append(True)
        builtins.__import__ = _import
        start = server.Server.start
        async def watched(self, *a, **k):
            result = await start(self, *a, **k)
            import asyncio
            loop = asyncio.get_running_loop()
            out = open(os.environ["GEARSHIFT_LAG_FILE"], "a", buffering=1)
            last = [time.monotonic()]
            def tick():
                now = time.monotonic()
                late = now - last[0] - 0.005
                if late > 0.005:
                    out.write("%.6f\\n" % late)
                last[0] = now
                loop.call_later(0.005, tick)
            loop.call_later(0.005, tick)
            return result
        server.Server.start = watched
    return module
if os.environ.get("GEARSHIFT_LAG_FILE"):
    builtins.__import__ = _hooked
"""


class LimitedServer(GearshiftServer):
    """``gearshift serve`` under ``ulimit -n nofile`` (when given), its event loop's
    lateness written to ``lag_file``."""

    def __init__(self, extra_args: list[str], nofile: int | None, monitor_dir: str) -> None:
        self.lag_file = os.path.join(monitor_dir, "lag")
        pythonpath = os.pathsep.join(p for p in (monitor_dir, os.environ.get("PYTHONPATH"))
                                     if p)
        super().__init__(extra_args=extra_args, startup_timeout=30.0,
                         env={"PYTHONPATH": pythonpath, "GEARSHIFT_LAG_FILE": self.lag_file})
        self.nofile = nofile

    def worst_lag_ms(self) -> float:
        """The latest the server's loop ran a 5 ms timer, in ms (0: never over 5 ms)."""
        try:
            with open(self.lag_file) as fh:
                return max((float(line) * 1000 for line in fh if line.strip()), default=0.0)
        except OSError:
            return float("nan")

    def command(self) -> list[str]:
        command = super().command()
        if self.nofile is None:
            return command
        limit = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, "
                 f"({self.nofile}, {self.nofile})); os.execv(sys.argv[1], sys.argv[1:])")
        return [sys.executable, "-c", limit, *command]


# ------------------------------------------------------------------ the good client


def _recv_packet(sock: socket.socket, reader: PacketReader,
                 pending: list[tuple[int, list[bytes]]]) -> tuple[int, list[bytes]]:
    while not pending:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        pending += reader.feed(data)
    return pending.pop(0)


def _probe_worker(sock: socket.socket, stop: threading.Event) -> None:
    reader, pending = PacketReader(expect=RES, allow_text=False), []
    try:
        while not stop.is_set():
            sock.sendall(encode(P.GRAB_JOB, magic=REQ))
            ptype, fields = _recv_packet(sock, reader, pending)
            if ptype == P.NO_JOB:
                sock.sendall(encode(P.PRE_SLEEP, magic=REQ))
                while _recv_packet(sock, reader, pending)[0] != P.NOOP:
                    pass
            elif ptype == P.JOB_ASSIGN:
                sock.sendall(encode(P.WORK_COMPLETE, fields[0], fields[2], magic=REQ))
    except OSError:
        pass


def probe(host: str, port: int, seconds: float, pipe: Connection) -> None:
    """A worker and a client of function ``probe``; sends "ready", then the round
    trips' durations (seconds) when ``seconds`` have passed."""
    worker = socket.create_connection((host, port), timeout=30)
    worker.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    worker.sendall(encode(P.CAN_DO, b"probe", magic=REQ))
    client = socket.create_connection((host, port), timeout=30)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = threading.Event()
    thread = threading.Thread(target=_probe_worker, args=(worker, stop), daemon=True)
    thread.start()
    reader, pending = PacketReader(expect=RES, allow_text=False), []
    submit = encode(P.SUBMIT_JOB, b"probe", b"", b"ping", magic=REQ)
    client.sendall(submit)  # one round trip before "ready": both are connected
    while _recv_packet(client, reader, pending)[0] != P.WORK_COMPLETE:
        pass
    pipe.send("ready")
    durations: list[float] = []
    worst_at = 0.0  # seconds after "ready" that the slowest round trip began
    failures = refused = 0
    began = time.monotonic()
    deadline = began + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            client.sendall(submit)
            ptype = 0
            while ptype not in (P.WORK_COMPLETE, P.ERROR):
                ptype = _recv_packet(client, reader, pending)[0]
        except OSError:
            failures += 1
            break
        took = time.perf_counter() - started
        if not durations or took > max(durations):
            worst_at = time.monotonic() - began - took
        durations.append(took)
        refused += ptype == P.ERROR  # e.g. QUEUE_ERROR: --max-memory is full
        time.sleep(0.002)
    stop.set()
    pipe.send((durations, failures, refused, worst_at))
    for sock in (client, worker):
        sock.close()


# ------------------------------------------------------------------ the loads


class Hostile:
    """A load running in threads of this process until :meth:`stop`."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.sockets: list[socket.socket] = []
        #: what the load got done, for the table (called once the round trips ended)
        self.describe: Callable[[], str] = lambda: ""

    def spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=self._guarded(target), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _guarded(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            # The attacker would be on another machine: here its threads share the two
            # cores with the server and the probe, so they yield first (nice is per
            # thread on Linux). What is measured is the server's fairness, not ours.
            os.nice(19)
            with contextlib.suppress(OSError):  # the server closed it: that is measured
                target()
        return run

    def connect(self, server: GearshiftServer, timeout: float = 10.0) -> socket.socket:
        sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sockets.append(sock)
        return sock

    def stop(self) -> None:
        self.stopping.set()
        for sock in list(self.sockets):
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self.threads:
            thread.join(10)


def queue_jobs(server: GearshiftServer, function: bytes, count: int, payload: bytes) -> None:
    """``count`` background jobs, pipelined 1,000 at a time, each JOB_CREATED read."""
    sock = socket.create_connection((server.host, server.port), timeout=60)
    reader, pending = PacketReader(expect=RES, allow_text=False), []
    for start in range(0, count, 1000):
        n = min(1000, count - start)
        sock.sendall(b"".join(encode(P.SUBMIT_JOB_BG, function, b"", payload, magic=REQ)
                              for _ in range(n)))
        for _ in range(n):
            ptype, fields = _recv_packet(sock, reader, pending)
            if ptype != P.JOB_CREATED:
                raise RuntimeError(f"queueing: {P(ptype).name} {fields}")
    sock.close()


def load_show_jobs(server: GearshiftServer) -> Hostile:
    hostile = Hostile()
    sock = hostile.connect(server)
    sock.sendall(b"show jobs\n" * 3000)  # and never read
    hostile.describe = lambda: "3,000 x 20k-row listing, unread"
    return hostile


def load_partial_bodies(server: GearshiftServer) -> Hostile:
    hostile = Hostile()
    body = memoryview(b"\0" * (60 * MIB))
    head = P.SUBMIT_JOB.to_bytes(4, "big")
    declared = 64 * MIB
    sent = [0] * 34
    cut = [0]

    def one(i: int) -> Callable[[], None]:
        def run() -> None:
            sock = hostile.connect(server, timeout=30)
            sock.sendall(REQ + head + declared.to_bytes(4, "big") + b"fn\0\0")
            view = body
            try:
                while view and not hostile.stopping.is_set():
                    n = sock.send(view[:MIB])
                    sent[i] += n
                    view = view[n:]
            except OSError:
                cut[0] += 1
                raise
            hostile.stopping.wait()  # stall with the packet incomplete
        return run

    for i in range(34):
        hostile.spawn(one(i))
    hostile.describe = lambda: f"{sum(sent) / MIB:,.0f} MiB sent, {cut[0]} of 34 cut"
    return hostile


def load_names(server: GearshiftServer) -> Hostile:
    hostile = Hostile()

    def run() -> None:
        sock = hostile.connect(server, timeout=60)
        for start in range(0, 100_000, 5000):
            if hostile.stopping.is_set():
                return
            sock.sendall(b"".join(encode(P.CAN_DO, b"hostile-%d" % i, magic=REQ)
                                  + encode(P.CANT_DO, b"hostile-%d" % i, magic=REQ)
                                  for i in range(start, start + 5000)))
        done[0] = True
    done = [False]
    hostile.spawn(run)
    hostile.describe = lambda: "100k names sent" if done[0] else "not all sent in time"
    return hostile


def load_big_jobs(server: GearshiftServer) -> Hostile:
    hostile = Hostile()
    outcome: dict[str, int] = {"created": 0, "refused": 0}

    def run() -> None:
        sock = hostile.connect(server, timeout=60)
        reader, pending = PacketReader(expect=RES, allow_text=False), []
        payload = b"j" * MIB
        for _i in range(2000):
            if hostile.stopping.is_set():
                return
            sock.sendall(encode(P.SUBMIT_JOB_BG, b"big", b"", payload, magic=REQ))
            ptype, _ = _recv_packet(sock, reader, pending)
            outcome["created" if ptype == P.JOB_CREATED else "refused"] += 1
    hostile.spawn(run)
    hostile.describe = lambda: f"{outcome['created']} queued, {outcome['refused']} refused"
    return hostile


def _control_name(rng: random.Random, i: int) -> bytes:
    bad = bytes(rng.choice(range(1, 32)) for _ in range(8))
    return b"evil\t7\t7\t7\n.\n" + bad + b"%d\x7f\\x41" % i


def _listing(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line)
    text = b""
    while not (text.endswith(b"\n.\n") or text == b".\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        text += chunk
    return text


def load_control_names(server: GearshiftServer) -> Hostile:
    hostile = Hostile()
    rng = random.Random(15)
    names = [_control_name(rng, i) for i in range(5000)]
    seen = {"listings": 0, "status rows": 0}

    def run() -> None:
        sock = hostile.connect(server, timeout=60)
        reader, pending = PacketReader(expect=RES, allow_text=False), []
        sock.sendall(b"".join(encode(P.SUBMIT_JOB_BG, n, b"", b"x", magic=REQ) for n in names))
        for _ in names:
            _recv_packet(sock, reader, pending)
        worker = hostile.connect(server)
        worker.sendall(b"".join(encode(P.CAN_DO, n, magic=REQ) for n in names[:1000]))
        admin = hostile.connect(server, timeout=60)
        while not hostile.stopping.wait(0.2):
            seen["status rows"] = _listing(admin, b"status\n").count(b"\n") - 1
            _listing(admin, b"workers\n")
            seen["listings"] += 2
    hostile.spawn(run)
    hostile.describe = lambda: (f"{seen['listings']} listings read; status: "
                                f"{seen['status rows']:,} rows for 5,001 functions")
    return hostile


def load_descriptors(server: GearshiftServer) -> Hostile:
    hostile = Hostile()
    counts = {"opened": 0, "closed by server": 0}

    def run() -> None:
        live: list[socket.socket] = []
        while not hostile.stopping.is_set():
            while len(live) < 600 and not hostile.stopping.is_set():
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex((server.host, server.port))
                live.append(sock)
                counts["opened"] += 1
            readable, _, _ = select.select(live, [], [], 0.05)
            for sock in readable:
                try:
                    if sock.recv(4096):
                        continue
                except OSError:
                    pass
                counts["closed by server"] += 1
                live.remove(sock)
                sock.close()
        for sock in live:
            sock.close()
    hostile.spawn(run)
    hostile.describe = lambda: (f"{counts['opened']:,} opened, "
                                f"{counts['closed by server']:,} closed by the server")
    return hostile


@dataclass
class Load:
    key: str
    title: str
    start: Callable[[GearshiftServer], Hostile]
    args: list[str] = field(default_factory=list)
    nofile: int | None = None
    setup: Callable[[GearshiftServer], None] | None = None


def _nothing(server: GearshiftServer) -> Hostile:
    return Hostile()


LOADS = [
    Load("0", "no hostile load (reference)", _nothing),
    Load("a", "3,000 pipelined show jobs, 20k queued, never read", load_show_jobs,
         setup=lambda s: queue_jobs(s, b"flood", 20_000, b"x" * 64)),
    Load("b", "34 x 60 MiB of a 64 MiB body, then stall", load_partial_bodies),
    Load("c", "100k distinct function names", load_names),
    Load("d", "2,000 x 1 MiB background jobs, no worker", load_big_jobs),
    Load("d'", "the same with --max-memory 256MiB", load_big_jobs,
         args=["--max-memory", "256MiB"]),
    Load("e", "control characters in function names", load_control_names),
    Load("f", "fd exhaustion: ulimit -n 256, 600 connections", load_descriptors,
         nofile=256),
]


# ------------------------------------------------------------------ running


def answers(server: GearshiftServer) -> bool:
    try:
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"version\n")
            return sock.recv(64).startswith(b"OK")
    except OSError:
        return False


def run_load(load: Load, seconds: float, extra: list[str]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    monitor = tempfile.mkdtemp(prefix="gearshift-lag-")
    with open(os.path.join(monitor, "sitecustomize.py"), "w") as fh:
        fh.write(LAG_MONITOR)
    with LimitedServer([*load.args, *extra], load.nofile, monitor) as server:
        if load.setup is not None:
            load.setup(server)
        if os.path.exists(server.lag_file):
            os.truncate(server.lag_file, 0)  # the setup's own stalls are not the load's
        before = rss_kib(server.pid)
        sampler = Sampler(server.pid)
        sampler.start()
        mine, theirs = context.Pipe()
        prober = context.Process(target=probe, args=(server.host, server.port, seconds, theirs))
        prober.start()
        if not mine.poll(30) or mine.recv() != "ready":
            raise RuntimeError("the probe did not start")
        hostile = load.start(server)
        durations, failures, refused, worst_at = (
            mine.recv() if mine.poll(seconds + 60) else ([], 1, 0, 0.0))
        lag = server.worst_lag_ms()
        prober.join(10)
        sampler.done.set()
        sampler.join()
        note = hostile.describe()
        hostile.stop()
        time.sleep(2.0)  # the server notices the closed connections
        after = rss_kib(server.pid)
        alive = answers(server)
    shutil.rmtree(monitor, ignore_errors=True)
    ms = sorted(d * 1000 for d in durations)
    return {
        "load": load.key, "title": load.title, "round_trips": len(ms),
        "p50": statistics.median(ms) if ms else float("nan"),
        "p99": ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan"),
        "max": ms[-1] if ms else float("nan"), "failures": failures, "refused": refused,
        "worst_at": worst_at, "lag": lag,
        "rss_before": before / 1024, "rss_peak": max(sampler.peak, before) / 1024,
        "rss_after": after / 1024, "alive": alive, "note": note,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print("| load | round trips | p50 ms | p99 ms | worst ms | server loop late, worst "
          "| RSS before | peak | after | answers after | notes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        flag = "" if r["p99"] < 50 else " (over 50)"
        failed = f" + {r['failures']} failed" if r["failures"] else ""
        if r["refused"]:
            failed += f" ({r['refused']:,} refused)"
        print(f"| {r['load']} {r['title']} | {r['round_trips']:,}{failed} | {r['p50']:.2f} | "
              f"{r['p99']:.2f}{flag} | {r['max']:.1f} at {r['worst_at']:.1f} s | "
              f"{r['lag']:.1f} ms | {r['rss_before']:.0f} MiB | "
              f"{r['rss_peak']:.0f} MiB | {r['rss_after']:.0f} MiB | "
              f"{'yes' if r['alive'] else 'NO'} | {r['note']} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0,
                        help="seconds each load runs while the good client is measured")
    parser.add_argument("--only", default="", help="comma-separated load letters (a,b,d')")
    parser.add_argument("--server-args", default="", help="more serve options for every row")
    args = parser.parse_args()
    wanted = {k.strip() for k in args.only.split(",") if k.strip()}
    loads = [load for load in LOADS if not wanted or load.key in wanted]
    import gearshift

    print(f"gearshift {build_name()} from {os.path.dirname(gearshift.__file__)}; "
          f"{args.duration:g} s per load", flush=True)
    rows = []
    for load in loads:
        print(f"... {load.key}: {load.title}", file=sys.stderr, flush=True)
        rows.append(run_load(load, args.duration, args.server_args.split()))
    print_table(rows)


if __name__ == "__main__":
    main()
