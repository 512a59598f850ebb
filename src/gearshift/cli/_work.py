"""``gearshift work``: the ``gearman -w`` worker mode, on gearshift's worker library.

Each job runs COMMAND with the workload on stdin; its stdout is the result. A non-zero
exit sends the output as WORK_DATA, then WORK_FAIL (as ``gearman -w`` does). Without a
command the workload is written to our stdout and the result is empty. SIGTERM/SIGINT
finish the running job and exit 0.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence

from gearshift.cli._submit import add_server_options, servers_from_args
from gearshift.client import Job, Worker, WorkerProcesses


class CommandFailed(Exception):
    """The job's command exited non-zero (becomes WORK_FAIL)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("work", add_help=False, help="run a command per job (`gearman -w`)",
                       description="Register functions and run COMMAND for each job, like "
                                   "`gearman -w`: workload on stdin, stdout is the result.")
    add_server_options(p)
    p.add_argument("-f", "--function", action="append", required=True, metavar="FUNC",
                   help="function to register (repeatable)")
    p.add_argument("-c", "--count", type=int, default=None, metavar="N",
                   help="exit after N jobs")
    p.add_argument("-j", "--concurrency", type=int, default=1, metavar="N",
                   help="jobs run at once per server (one connection each)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="fork N worker processes (CPU-bound commands; -c then counts per "
                        "process)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="register with CAN_DO_TIMEOUT: the server requeues slower jobs")
    p.add_argument("--client-id", default=None, help="SET_CLIENT_ID shown by admin workers")
    p.add_argument("-i", "--pid-file", default=None, help="write our pid here")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="command to run per job (put it after --)")
    p.set_defaults(func=run)


def command_handler(command: Sequence[str]) -> Callable[[Job], bytes]:
    """The job function for ``command`` (or the echo-to-stdout function without one)."""
    if not command:
        def echo(job: Job) -> bytes:
            sys.stdout.buffer.write(job.data)
            sys.stdout.buffer.flush()
            return b""
        return echo

    def execute(job: Job) -> bytes:
        done = subprocess.run(list(command), input=job.data, stdout=subprocess.PIPE,
                              check=False)
        if done.returncode != 0:
            if done.stdout:
                job.send_data(done.stdout)
            raise CommandFailed(f"{command[0]} exited with {done.returncode}")
        return done.stdout
    return execute


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.count is not None and args.count < 1:
        sys.stderr.write("gearshift work: -c needs a positive count\n")
        return 2
    try:
        worker = Worker(servers_from_args(args), client_id=args.client_id,
                        concurrency=args.concurrency)
    except ValueError as exc:
        sys.stderr.write(f"gearshift work: {exc}\n")
        return 2
    handler = command_handler(command)
    for function in args.function:
        worker.register(function, handler, timeout=args.timeout)
    if args.pid_file:
        with open(args.pid_file, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    if args.processes > 1:
        return WorkerProcesses(worker, args.processes).run(max_jobs=args.count)
    worker.run(max_jobs=args.count, handle_signals=True)
    return 0
