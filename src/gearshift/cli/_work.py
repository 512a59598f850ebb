"""``gearshift work``: the ``gearman -w`` worker mode, on gearshift's worker library.

Each job runs COMMAND with the workload on stdin; its stdout is the result. A non-zero
exit (or a signal, or ``--timeout``) sends the output as WORK_DATA, then fails the job (as
``gearman -w`` does) with a reason naming the exit status and the end of the command's
stderr -- WORK_EXCEPTION on a gearshift server, bare WORK_FAIL elsewhere (the worker
library's "auto" mode). The command's stderr is still passed through to ours as it
comes, so capturing its tail for the reason hides nothing. Without a command the
workload is written to our stdout and the result is empty. SIGTERM/SIGINT finish the
running job and exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO

from gearshift._units import parse_size
from gearshift.cli._submit import add_server_options, servers_from_args
from gearshift.cli._tls_options import client_ssl_from_args
from gearshift.client import Job, Worker, WorkerProcesses
from gearshift.client._supervision import parse_processes

#: Bytes of the command's stderr kept for the failure reason: the end of it is where
#: the error usually is, and the reason must stay small (the library caps it at 4 KiB).
STDERR_TAIL = 2048
#: Seconds a stopped command (timeout, stop now) has between SIGTERM and SIGKILL.
KILL_GRACE = 5.0


class CommandFailed(Exception):
    """The job's command failed (exit status, signal or timeout): the job fails with
    this message as its reason."""


class StderrTee:
    """Copy a command's stderr to ours as it arrives, keeping the last bytes for the
    failure reason (a thread: the command may write stderr while we feed its stdin)."""

    def __init__(self, source: IO[bytes], sink: IO[bytes] | None) -> None:
        self._source = source
        self._sink = sink
        self._tail = bytearray()
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        with self._source:
            while chunk := os.read(self._source.fileno(), 65536):
                if self._sink is not None:
                    try:
                        self._sink.write(chunk)
                        self._sink.flush()
                    except (OSError, ValueError):  # our stderr closed: keep the tail
                        self._sink = None
                self._tail += chunk
                del self._tail[:-STDERR_TAIL]

    def tail(self) -> str:
        """The last bytes written, once the command's stderr is closed."""
        self._thread.join()
        return self._tail.decode(errors="replace").lstrip("\ufffd").strip()


def failure(command: str, returncode: int, stderr: str) -> str:
    """The reason for a failed command: exit status or signal, then its stderr's end."""
    if returncode < 0:
        try:
            what = f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            what = f"killed by signal {-returncode}"
    else:
        what = f"exited with status {returncode}"
    return f"{command} {what}: {stderr}" if stderr else f"{command} {what}"


class QuietCommandFailures(logging.Filter):
    """Drop the traceback of a :class:`CommandFailed`: its reason says everything and
    the traceback only shows this module, so each failed job stays one line on stderr.
    Other exceptions (bugs) keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], CommandFailed):
            record.exc_info = None
        return True


def log_to_stderr() -> None:
    """The worker library's warnings (failed jobs, lost servers) on our stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("gearshift work: %(message)s"))
    handler.addFilter(QuietCommandFailures())
    logging.getLogger("gearshift.client").addHandler(handler)


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
    p.add_argument("--processes", type=processes_spec, default=None, metavar="N|MIN:MAX",
                   help="run N supervised worker processes (MIN:MAX: scale between them "
                        "by the functions' backlog on the servers): a crashed one is "
                        "replaced, SIGHUP replaces each after its running job, SIGTERM "
                        "drains (twice: stop now); -c then counts per process")
    p.add_argument("--reload-on-change", action="append", default=[], metavar="PATH",
                   help="with --processes: reload (as SIGHUP) when files under PATH "
                        "change (repeatable; looked at once a second)")
    p.add_argument("--status-file", default=None, metavar="PATH",
                   help="with --processes: write the worker processes and their current "
                        "jobs to PATH as JSON, every second")
    p.add_argument("--max-jobs-per-child", type=int, default=None, metavar="N",
                   help="with --processes: replace a process after N jobs")
    p.add_argument("--max-memory-per-child", type=parse_size, default=None, metavar="SIZE",
                   help="with --processes: replace a process whose memory is above SIZE "
                        "(e.g. 512MiB) after a job")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop a job still running after SECONDS: its command's process "
                        "group gets SIGTERM (SIGKILL 5 s later) and the job fails with "
                        "'timeout after SECONDS s'")
    p.add_argument("--kill-grace", type=float, default=KILL_GRACE, metavar="SECONDS",
                   help="seconds a stopped command has between SIGTERM and SIGKILL "
                        f"(default {KILL_GRACE:g})")
    p.add_argument("--client-id", default=None, help="SET_CLIENT_ID shown by admin workers")
    p.add_argument("-i", "--pid-file", default=None, help="write our pid here")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="command to run per job (put it after --)")
    p.set_defaults(func=run)


def signal_group(pgid: int, signum: int) -> None:
    """Signal a command's whole process group (it may be gone already)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def command_handler(command: Sequence[str],
                    grace: float = KILL_GRACE) -> Callable[[Job], bytes]:
    """The job function for ``command`` (or the echo-to-stdout function without one).

    Each command runs in a process group of its own, so stopping a job (its timeout,
    the worker stopping now) reaches everything it started: SIGTERM to the group, SIGKILL
    ``grace`` seconds later if it is still there.
    """
    if not command:
        def echo(job: Job) -> bytes:
            sys.stdout.buffer.write(job.data)
            sys.stdout.buffer.flush()
            return b""
        return echo

    def execute(job: Job) -> bytes:
        proc = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, process_group=0)
        assert proc.stderr is not None
        # The tee owns stderr; communicate() then handles only stdin and stdout.
        tee = StderrTee(proc.stderr, getattr(sys.stderr, "buffer", None))
        proc.stderr = None

        def stop_command() -> None:
            signal_group(proc.pid, signal.SIGTERM)
            killer = threading.Timer(grace, signal_group, (proc.pid, signal.SIGKILL))
            killer.daemon = True
            killer.start()

        job.on_cancel(stop_command)
        try:
            stdout, _ = proc.communicate(job.data)
        finally:
            if proc.poll() is None:  # interrupted: do not leave the command behind
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            if job.cancelled is not None:  # stopped: nothing it started may outlive it
                signal_group(proc.pid, signal.SIGKILL)
        stderr = tee.tail()
        if proc.returncode == 0 and job.cancelled is None:
            return stdout
        if stdout:
            job.send_data(stdout)
        raise CommandFailed(failure(command[0], proc.returncode, stderr))
    return execute


def processes_spec(text: str) -> tuple[int, int]:
    """``--processes N`` or ``MIN:MAX`` (argparse type: its ValueError names the text)."""
    try:
        return parse_processes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def supervision_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the supervision flags, if anything."""
    per_child = args.max_jobs_per_child is not None or args.max_memory_per_child is not None
    if (per_child or args.reload_on_change or args.status_file) and args.processes is None:
        return ("--max-jobs-per-child, --max-memory-per-child, --reload-on-change and "
                "--status-file need --processes")
    if args.max_jobs_per_child is not None and args.max_jobs_per_child < 1:
        return "--max-jobs-per-child needs a positive count"
    return None


def run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.count is not None and args.count < 1:
        sys.stderr.write("gearshift work: -c needs a positive count\n")
        return 2
    problem = supervision_problem(args)
    if problem:
        sys.stderr.write(f"gearshift work: {problem}\n")
        return 2
    try:
        worker = Worker(servers_from_args(args), client_id=args.client_id,
                        concurrency=args.concurrency, ssl=client_ssl_from_args(args))
    except ValueError as exc:
        sys.stderr.write(f"gearshift work: {exc}\n")
        return 2
    log_to_stderr()
    handler = command_handler(command, args.kill_grace)
    for function in args.function:
        worker.register(function, handler, timeout=args.timeout)
    if args.pid_file:
        with open(args.pid_file, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    if args.processes is not None:
        logging.getLogger("gearshift.client.supervisor").setLevel(logging.INFO)
        low, high = args.processes
        return WorkerProcesses(worker, (low, high) if high > low else low,
                               max_jobs_per_child=args.max_jobs_per_child,
                               max_memory_per_child=args.max_memory_per_child,
                               reload_on_change=args.reload_on_change,
                               status_file=args.status_file,
                               ).run(max_jobs=args.count)
    worker.run(max_jobs=args.count, handle_signals=True)
    return 0
