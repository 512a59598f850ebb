"""Interop peer for ``pygearman`` (PyPI; the python-gearman 2.x API, imported as ``gearman``).

Same command line as every peer (contract in tests/interop/_peers.py)::

    python pygearman_peer.py worker HOST PORT FUNC MODE LOGFILE
    python pygearman_peer.py client HOST PORT OP FUNC ARGS...

The library has no CAN_DO_TIMEOUT and never sends ``OPTION_REQ exceptions``, so its client
sees a worker exception as WORK_FAIL (the server converts it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import gearman  # type: ignore[import-untyped]
from gearman.constants import (  # type: ignore[import-untyped]
    JOB_COMPLETE,
    JOB_CREATED,
    JOB_FAILED,
    PRIORITY_HIGH,
    PRIORITY_LOW,
)
from gearman.job import GearmanJob, GearmanJobRequest  # type: ignore[import-untyped]

PRIORITY = {"normal": None, "high": PRIORITY_HIGH, "low": PRIORITY_LOW}


def log_job(logfile: str, workload: str) -> None:
    with open(logfile, "a") as fh:
        fh.write(f"job {workload}\n")


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


class Boom(Exception):
    """Raised by the exception-mode handler; the library then sends WORK_EXCEPTION."""


def run_worker(host: str, port: str, func: str, mode: str, logfile: str) -> None:
    worker = gearman.GearmanWorker([f"{host}:{port}"])

    def handler(w: gearman.GearmanWorker, job: GearmanJob) -> Any:
        workload = job.data.decode() if isinstance(job.data, bytes) else job.data
        log_job(logfile, workload)
        if mode == "echo":
            return f"pygearman:{workload.upper()}"
        if mode == "stream":
            w.send_job_data(job, "chunk1")
            w.send_job_status(job, 1, 2)
            w.send_job_warning(job, "careful")
            w.send_job_data(job, "chunk2")
            w.send_job_status(job, 2, 2)
            return "done"
        if mode == "hold":
            w.send_job_status(job, 1, 2)
            wait_for_file(workload)
            return "released"
        if mode == "fail":
            raise RuntimeError("fail mode")  # the library answers WORK_FAIL
        if mode == "exception":
            w.send_job_exception(job, "boom")
            raise Boom
        raise SystemExit(f"unknown worker mode: {mode}")

    worker.register_task(func.encode(), handler)  # JOB_ASSIGN names arrive as bytes
    worker.work()


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def outcome(req: GearmanJobRequest) -> dict[str, Any]:
    if req.exception is not None:
        return {"status": "exception", "exception": text(req.exception)}
    if req.state == JOB_COMPLETE:
        return {"status": "complete", "result": text(req.result)}
    if req.state == JOB_FAILED:
        return {"status": "fail"}
    return {"status": "error", "error": f"state {req.state}, timed_out={req.timed_out}"}


def status(client: gearman.GearmanClient, handle: str) -> dict[str, Any]:
    """GET_STATUS for a handle submitted by another process: wrap it in a request object."""
    req = GearmanJobRequest(GearmanJob(None, handle.encode(), "", None, b""))
    req.job.connection = client.establish_request_connection(req)
    req.state = JOB_CREATED
    req = client.get_job_status(req, poll_timeout=20)
    st = req.status
    return {"known": bool(st.get("known")), "running": bool(st.get("running")),
            "num": st.get("numerator", 0), "den": st.get("denominator", 0)}


def admin(host: str, port: str) -> dict[str, Any]:
    adm = gearman.GearmanAdminClient([f"{host}:{port}"], poll_timeout=20)
    table = {row["task"]: [row["queued"], row["running"], row["workers"]]
             for row in adm.get_status()}
    workers = [list(row["tasks"]) for row in adm.get_workers()]
    return {"status": table, "workers": workers}


def run_client(host: str, port: str, op: str, func: str, *args: str) -> dict[str, Any]:
    client = gearman.GearmanClient([f"{host}:{port}"])
    if op in ("do", "stream"):
        prio, workload, unique = (("normal", args[0], None) if op == "stream"
                                  else (args[0], args[1], args[2] if len(args) > 2 else None))
        req = client.submit_job(func, workload, unique=unique, priority=PRIORITY[prio],
                                poll_timeout=40)
        res = outcome(req)
        if op == "stream":
            # The library queues intermediate packets per kind, so the interleaving of
            # WORK_DATA, WARNING and STATUS is not recoverable; each kind on its own.
            res["events"] = [["data", text(d)] for d in req.data_updates]
            res["warnings"] = [text(d) for d in req.warning_updates]
            if req.status:
                res["last_status"] = [req.status["numerator"], req.status["denominator"]]
        return res
    if op == "bg":
        prio, workload = args[0], args[1]
        req = client.submit_job(func, workload, unique=args[2] if len(args) > 2 else None,
                                priority=PRIORITY[prio], background=True,
                                wait_until_complete=False, poll_timeout=20)
        return {"handle": text(req.job.handle)}
    if op == "status":
        return status(client, args[0])
    if op == "tasks":
        reqs = client.submit_multiple_jobs([{"task": func, "data": w} for w in args],
                                           poll_timeout=40)
        return {"results": [outcome(r).get("result") for r in reqs]}
    if op == "shared":
        unique, workload, created_file = args
        req = client.submit_job(func, workload, unique=unique, wait_until_complete=False,
                                poll_timeout=20)
        with open(created_file, "w") as fh:
            fh.write(text(req.job.handle))
        req = client.wait_until_jobs_completed([req], poll_timeout=40)[0]
        return {**outcome(req), "handle": text(req.job.handle)}
    if op == "admin":
        return admin(host, port)
    raise SystemExit(f"unsupported client op: {op}")


def main(argv: list[str]) -> None:
    if len(argv) < 6:
        raise SystemExit("usage: pygearman_peer.py worker|client HOST PORT ...")
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
