"""Interop peer for OpenStack's ``gear`` library (PyPI ``gear``): client, worker and admin.

Same command line as every peer (contract in tests/interop/_peers.py)::

    python gear_peer.py worker HOST PORT FUNC MODE LOGFILE [TIMEOUT]
    python gear_peer.py client HOST PORT OP FUNC ARGS...
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import gear

PRECEDENCE = {"normal": gear.PRECEDENCE_NORMAL, "high": gear.PRECEDENCE_HIGH,
              "low": gear.PRECEDENCE_LOW}


def log_job(logfile: str, workload: str) -> None:
    with open(logfile, "a") as fh:
        fh.write(f"job {workload}\n")


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def run_worker(host: str, port: str, func: str, mode: str, logfile: str,
               timeout: str | None = None) -> None:
    worker = gear.Worker("interop-gear")
    worker.addServer(host, int(port))
    worker.waitForServer()
    # gear documents the timeout as numeric but concatenates it to the packet as bytes.
    worker.registerFunction(func, timeout=timeout.encode() if timeout else None)
    while True:
        job = worker.getJob()
        workload = job.arguments.decode()
        log_job(logfile, workload)
        if mode == "echo":
            job.sendWorkComplete(f"gear:{workload.upper()}".encode())
        elif mode == "stream":
            job.sendWorkData(b"chunk1")
            job.sendWorkStatus(1, 2)
            job.sendWorkWarning(b"careful")
            job.sendWorkData(b"chunk2")
            job.sendWorkStatus(2, 2)
            job.sendWorkComplete(b"done")
        elif mode == "hold":
            job.sendWorkStatus(1, 2)
            wait_for_file(workload)
            job.sendWorkComplete(b"released")
        elif mode == "fail":
            job.sendWorkFail()
        elif mode == "exception":
            job.sendWorkException(b"boom")
        else:
            raise SystemExit(f"unknown worker mode: {mode}")


def connect(host: str, port: str) -> gear.Client:
    client = gear.Client("interop-gear")
    client.addServer(host, int(port))
    client.waitForServer(timeout=20)
    return client


def wait_done(jobs: list[gear.Job], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while not all(j.complete for j in jobs) and time.monotonic() < deadline:
        time.sleep(0.01)


def outcome(job: gear.Job) -> dict[str, Any]:
    if not job.complete:
        return {"status": "error", "error": "no reply"}
    if job.exception is not None:
        return {"status": "exception", "exception": job.exception.decode(errors="replace")}
    if job.failure:
        return {"status": "fail"}
    # gear appends WORK_DATA payloads and the WORK_COMPLETE payload to one list.
    result = job.data[-1].decode(errors="replace") if job.data else ""
    return {"status": "complete", "result": result}


class StreamClient(gear.Client):  # type: ignore[misc]
    """Records WORK_DATA / WARNING / STATUS in arrival order (gear only keeps the latest)."""

    def __init__(self) -> None:
        super().__init__("interop-gear")
        self.events: list[list[Any]] = []

    def handleWorkData(self, packet: gear.Packet) -> gear.Job:
        self.events.append(["data", packet.getArgument(1, True).decode()])
        return super().handleWorkData(packet)

    def handleWorkWarning(self, packet: gear.Packet) -> gear.Job:
        self.events.append(["warning", packet.getArgument(1, True).decode()])
        return super().handleWorkWarning(packet)

    def handleWorkStatus(self, packet: gear.Packet) -> gear.Job:
        self.events.append(["status", int(packet.getArgument(1)), int(packet.getArgument(2))])
        return super().handleWorkStatus(packet)


def status(client: gear.Client, handle: str) -> dict[str, Any]:
    """GET_STATUS for a handle this process did not submit.

    gear matches STATUS_RES to jobs it submitted on the same connection, so the handle is
    registered there first with a placeholder job.
    """
    conn = client.getConnection()
    job = gear.Job(b"", b"")
    job.handle = handle.encode()
    job.connection = conn
    conn.related_jobs[job.handle] = job
    client.sendPacket(gear.Packet(gear.constants.REQ, gear.constants.GET_STATUS, job.handle),
                      conn)
    deadline = time.monotonic() + 20
    while job.known is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"known": bool(job.known), "running": bool(job.running),
            "num": int(job.numerator or 0), "den": int(job.denominator or 0)}


def admin(client: gear.Client) -> dict[str, Any]:
    conn = client.getConnection()
    req = gear.StatusAdminRequest()
    conn.sendAdminRequest(req, timeout=20)
    table = {}
    for line in req.response.decode().splitlines():
        fields = line.split("\t")
        if len(fields) == 4:
            table[fields[0]] = [int(x) for x in fields[1:]]
    wreq = gear.WorkersAdminRequest()
    conn.sendAdminRequest(wreq, timeout=20)
    workers = [line.split(" : ", 1)[1].split() if " : " in line else []
               for line in wreq.response.decode().splitlines() if line not in ("", ".")]
    return {"status": table, "workers": workers}


def run_client(host: str, port: str, op: str, func: str, *args: str) -> dict[str, Any]:
    client: gear.Client = StreamClient() if op == "stream" else gear.Client("interop-gear")
    client.addServer(host, int(port))
    client.waitForServer(timeout=20)
    if op in ("do", "stream"):
        if op == "stream":
            prio, workload, unique = "normal", args[0], None
        else:
            prio, workload, unique = args[0], args[1], (args[2] if len(args) > 2 else None)
        client.setOption("exceptions")
        job = gear.Job(func, workload.encode(), unique=unique)
        client.submitJob(job, precedence=PRECEDENCE[prio], timeout=20)
        wait_done([job])
        res = outcome(job)
        if op == "stream":
            res["events"] = client.events
        return res
    if op == "bg":
        prio, workload = args[0], args[1]
        job = gear.Job(func, workload.encode(), unique=args[2] if len(args) > 2 else None)
        client.submitJob(job, background=True, precedence=PRECEDENCE[prio], timeout=20)
        return {"handle": job.handle.decode()}
    if op == "status":
        return status(client, args[0])
    if op == "tasks":
        jobs = [gear.Job(func, w.encode()) for w in args]
        for job in jobs:
            client.submitJob(job, timeout=20)
        wait_done(jobs)
        return {"results": [outcome(j).get("result") for j in jobs]}
    if op == "shared":
        unique, workload, created_file = args
        job = gear.Job(func, workload.encode(), unique=unique)
        client.submitJob(job, timeout=20)  # returns once JOB_CREATED arrived
        with open(created_file, "w") as fh:
            fh.write(job.handle.decode())
        wait_done([job])
        return {**outcome(job), "handle": job.handle.decode()}
    if op == "admin":
        return admin(client)
    raise SystemExit(f"unsupported client op: {op}")


def main(argv: list[str]) -> None:
    if len(argv) < 6:
        raise SystemExit("usage: gear_peer.py worker|client HOST PORT ...")
    if argv[1] == "worker":
        run_worker(*argv[2:])
    else:
        try:
            result = run_client(*argv[2:])
        except Exception as exc:  # report the library's failure as data, not a traceback
            result = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(result), flush=True)
        os._exit(0)  # gear's connection threads are not daemons


if __name__ == "__main__":
    main(sys.argv)
