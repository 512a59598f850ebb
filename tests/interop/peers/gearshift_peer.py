"""Interop peer for gearshift's own blocking client, worker and admin libraries.

Same command line as the third-party peers (contract in tests/interop/_peers.py), so our
library meets every third-party client and worker in the crossed matrix and runs the same
scenarios::

    python gearshift_peer.py worker HOST PORT FUNC MODE LOGFILE [TIMEOUT]
    python gearshift_peer.py client HOST PORT OP FUNC ARGS...
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from gearshift.client import (
    AdminClient,
    Client,
    EventKind,
    Job,
    JobException,
    JobFailed,
    Priority,
    Worker,
)


def log_job(logfile: str, workload: str) -> None:
    with open(logfile, "a") as fh:
        fh.write(f"job {workload}\n")


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def run_worker(host: str, port: str, func: str, mode: str, logfile: str,
               timeout: str | None = None) -> None:
    # exceptions=True only where the scenario wants WORK_EXCEPTION; otherwise a raised
    # exception is a bare WORK_FAIL (the library's default).
    worker = Worker([f"{host}:{port}"], client_id="interop-gearshift",
                    exceptions=mode == "exception")

    def handler(job: Job) -> bytes:
        workload = job.data.decode()
        log_job(logfile, workload)
        if mode == "echo":
            return f"gearshift:{workload.upper()}".encode()
        if mode == "stream":
            job.send_data(b"chunk1")
            job.send_status(1, 2)
            job.send_warning(b"careful")
            job.send_data(b"chunk2")
            job.send_status(2, 2)
            return b"done"
        if mode == "hold":
            job.send_status(1, 2)
            wait_for_file(workload)
            return b"released"
        if mode in ("fail", "exception"):
            raise RuntimeError("boom")
        raise SystemExit(f"unknown worker mode: {mode}")

    # can_do_timeout: the scenarios test the protocol's CAN_DO_TIMEOUT (server requeues),
    # not the library's own timeout (which stops the job and fails it)
    worker.register(func, handler, can_do_timeout=float(timeout) if timeout else None)
    worker.run()


def sync_call(client: Client, func: str, prio: str, workload: str,
              unique: str | None) -> dict[str, Any]:
    try:
        result = client.submit(func, workload.encode(), unique=unique, priority=Priority(prio))
    except JobException as exc:
        return {"status": "exception", "exception": exc.data.decode(errors="replace")}
    except JobFailed:
        return {"status": "fail"}
    return {"status": "complete", "result": result.decode(errors="replace")}


def stream(client: Client, func: str, workload: str) -> dict[str, Any]:
    events: list[list[Any]] = []
    res: dict[str, Any] = {"events": events}
    try:
        for ev in client.stream(func, workload.encode()):
            if ev.kind is EventKind.DATA:
                events.append(["data", ev.data.decode()])
            elif ev.kind is EventKind.WARNING:
                events.append(["warning", ev.data.decode()])
            elif ev.kind is EventKind.STATUS:
                events.append(["status", ev.numerator, ev.denominator])
            elif ev.kind is EventKind.COMPLETE:
                res.update(status="complete", result=ev.data.decode(errors="replace"))
    except JobException as exc:
        res.update(status="exception", exception=exc.data.decode(errors="replace"))
    except JobFailed:
        res.update(status="fail")
    return res


def admin(host: str, port: str) -> dict[str, Any]:
    adm = AdminClient(f"{host}:{port}", timeout=20)
    try:
        table = {s.function: [s.total, s.running, s.workers] for s in adm.status()}
        workers = [list(w.functions) for w in adm.workers()]
    finally:
        adm.close()
    return {"status": table, "workers": workers}


def run_client(host: str, port: str, op: str, func: str, *args: str) -> dict[str, Any]:
    if op == "admin":
        return admin(host, port)
    with Client([f"{host}:{port}"], exceptions=True, timeout=40) as client:
        if op == "do":
            return sync_call(client, func, args[0], args[1], args[2] if len(args) > 2 else None)
        if op == "stream":
            return stream(client, func, args[0])
        if op == "bg":
            handle = client.submit_background(func, args[1].encode(),
                                              unique=args[2] if len(args) > 2 else None,
                                              priority=Priority(args[0]))
            return {"handle": handle.decode()}
        if op == "status":
            st = client.status(args[0])
            return {"known": st.known, "running": st.running, "num": st.numerator,
                    "den": st.denominator}
        if op == "shared":
            unique, workload, created_file = args
            ts = client.task_set()
            task = ts.add(func, workload.encode(), unique=unique)
            ts.submit()  # returns once JOB_CREATED arrived
            with open(created_file, "w") as fh:
                fh.write((task.handle or b"").decode())
            try:
                result = ts.results()[0]
            except JobFailed:
                return {"status": "fail"}
            return {"status": "complete", "result": result.decode(),
                    "handle": (task.handle or b"").decode()}
        if op == "tasks":
            ts = client.task_set()
            for w in args:
                ts.add(func, w.encode())
            return {"results": [r.decode() for r in ts.results()]}
    raise SystemExit(f"unsupported client op: {op}")


def main(argv: list[str]) -> None:
    if len(argv) < 6:
        raise SystemExit("usage: gearshift_peer.py worker|client HOST PORT ...")
    if argv[1] == "worker":
        run_worker(*argv[2:])
    else:
        try:
            result = run_client(*argv[2:])
        except Exception as exc:  # report the library's failure as data, not a traceback
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv)
