"""``gearshift submit``: the ``gearman`` tool's client mode, on gearshift's client library.

Options keep ``gearman``'s spellings (``-f -h -p -b -I -L -u -n -N -s -P -v -t``);
differences: ``-h`` may hold a comma-separated server list, and the exit status is
non-zero when any job fails. Results (WORK_DATA and WORK_COMPLETE payloads) go to stdout
as they arrive; warnings, exception texts and failures go to stderr. With ``-n`` on a
terminal, a progress bar with rate and ETA is drawn on stderr (rich's when the ``cli``
extra is installed); piped output stays clean.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TextIO

from gearshift.cli._terminal import Bar, make_progress
from gearshift.cli._tls_options import add_client_tls_options, client_ssl_from_args
from gearshift.client import (
    Client,
    EventKind,
    GearmanError,
    GearmanTimeout,
    JobEvent,
    JobException,
    Priority,
    Task,
    parse_servers,
)
from gearshift.client._servers import Address

#: Jobs kept in flight at once with -n, so a 100k-line file streams in bounded memory.
WINDOW = 512


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """``-h HOST`` / ``-p PORT`` as the gearman tools spell them (so ``--help`` is help)."""
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("-h", "--host", default=None,
                        help="server host, or host:port[,host:port...] "
                             "(default: $GEARMAN_SERVERS, $GEARMAN_SERVER, localhost)")
    parser.add_argument("-p", "--port", type=int, default=None, help="server port (4730)")
    add_client_tls_options(parser)


def servers_from_args(args: argparse.Namespace) -> list[Address]:
    """-h/-p when given, else GEARMAN_SERVERS / GEARMAN_SERVER, else localhost:4730."""
    if args.host is None and args.port is None:
        return parse_servers(None)
    servers = parse_servers(args.host or "localhost")
    if args.port is not None:
        servers = [replace(s, port=args.port) for s in servers]
    return servers


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("submit", add_help=False, help="submit jobs (the `gearman` client mode)",
                       description="Submit jobs and print their results, like `gearman`.")
    add_server_options(p)
    p.add_argument("-f", "--function", action="append", required=True, metavar="FUNC",
                   help="function to call (repeatable: each workload goes to every function)")
    p.add_argument("-b", "--background", action="store_true", help="background jobs")
    prio = p.add_mutually_exclusive_group()
    prio.add_argument("-I", "--high", action="store_true", help="high priority")
    prio.add_argument("-L", "--low", action="store_true", help="low priority")
    p.add_argument("-u", "--unique", default=None, help="unique key for every job")
    lines = p.add_mutually_exclusive_group()
    lines.add_argument("-n", "--lines", action="store_true", help="one job per input line")
    lines.add_argument("-N", "--lines-chop", action="store_true",
                       help="like -n, dropping the last character of each line")
    p.add_argument("-s", "--empty", action="store_true",
                   help="send one job with an empty workload; do not read stdin")
    p.add_argument("-P", "--prefix", action="store_true", help="prefix output with 'FUNC: '")
    p.add_argument("-v", "--verbose", action="store_true", help="print 'Task created: HANDLE'")
    p.add_argument("-t", "--timeout", type=int, default=None, metavar="MS",
                   help="give up waiting after MS milliseconds")
    p.add_argument("workloads", nargs="*", help="workloads (default: stdin)")
    p.set_defaults(func=run)


def read_workloads(args: argparse.Namespace, stdin: TextIO) -> list[bytes]:
    if args.workloads:
        return [w.encode() for w in args.workloads]
    if args.empty:
        return [b""]
    data = stdin.buffer.read()
    if not (args.lines or args.lines_chop):
        return [data]
    # as in `gearman`: -n keeps each line's newline in the workload, -N drops the last byte
    items = data.splitlines(keepends=True)
    return [item[:-1] for item in items] if args.lines_chop else items


class Printer:
    """Writes job output the way ``gearman`` does; remembers whether anything failed."""

    def __init__(self, args: argparse.Namespace, out: TextIO, err: TextIO,
                 progress: Bar) -> None:
        self.args = args
        self.out = out
        self.err = err
        self.progress = progress
        self.failed = 0
        self.silent = False

    def _prefix(self, task: Task) -> bytes:
        return task.function + b": " if self.args.prefix else b""

    def event(self, task: Task, event: JobEvent) -> None:
        if event.kind is EventKind.DATA:
            self._write(self.out, self._prefix(task) + event.data)
        elif event.kind is EventKind.WARNING:
            self._write(self.err, self._prefix(task) + event.data + b"\n")
        elif event.kind is EventKind.STATUS and event.denominator:
            self._write(self.err, b"%s%d%% Complete\n" % (
                self._prefix(task), 100 * event.numerator // event.denominator))

    def done(self, task: Task) -> None:
        if self.silent:
            return
        self.progress.advance()
        if task.error is None:
            if self.args.verbose and task.handle:
                self._write(self.out, b"Task created: " + task.handle + b"\n")
            if not task.background:
                result = task.result or b""
                self._write(self.out, self._prefix(task) + result)
            return
        self.failed += 1
        if isinstance(task.error, JobException):
            self._write(self.err, self._prefix(task) + task.error.data + b"\n")
        self._write(self.err, self._prefix(task) + f"Job failed: {task.error}\n".encode())

    def _write(self, stream: TextIO, data: bytes) -> None:
        if self.progress.write(stream, data):
            return  # printed above rich's bar
        stream.flush()
        stream.buffer.write(data)
        stream.buffer.flush()


def _windows(items: Sequence[tuple[bytes, str]], size: int) -> Iterator[Sequence[tuple[bytes,
                                                                                        str]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _explain(exc: GearmanError, tasks: Sequence[Task], timeout_ms: int | None) -> str:
    """The error, or for a timeout after the server accepted jobs, what it really means:
    no worker answered in time (the server was fine)."""
    waiting = [t for t in tasks if t.handle is not None and not t.done]
    if not isinstance(exc, GearmanTimeout) or not waiting:
        return str(exc)
    functions = sorted({t.function.decode(errors="replace") for t in waiting})
    first = waiting[0].handle or b""
    return (f"the server accepted {len(waiting)} job(s) ({first.decode(errors='replace')}"
            f"{', ...' if len(waiting) > 1 else ''}) but no result came within "
            f"{timeout_ms} ms: no worker took them in time, or they are still running "
            f"(workers for {', '.join(map(repr, functions))}: gearshift admin --status)")


def run(args: argparse.Namespace, stdin: TextIO | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    try:
        servers = servers_from_args(args)
        tls = client_ssl_from_args(args)
    except ValueError as exc:
        err.write(f"gearshift submit: {exc}\n")
        return 2
    priority = Priority.HIGH if args.high else Priority.LOW if args.low else Priority.NORMAL
    jobs = [(w, f) for w in read_workloads(args, stdin) for f in args.function]
    timeout = None if args.timeout is None else args.timeout / 1000
    progress = make_progress(len(jobs), err)
    printer = Printer(args, out, err, progress)
    with Client(servers, exceptions=True, timeout=timeout, ssl=tls) as client:
        tasks = client.task_set()
        try:
            for window in _windows(jobs, WINDOW):
                tasks = client.task_set()
                for workload, function in window:
                    tasks.add(function, workload, unique=args.unique, priority=priority,
                              background=args.background, on_event=printer.event,
                              on_done=printer.done)
                tasks.wait()
        except GearmanError as exc:
            printer.silent = True  # closing the client fails the abandoned tasks; say it once
            progress.close()
            err.write(f"gearshift submit: {_explain(exc, tasks.tasks, args.timeout)}\n")
            return 1
    progress.close()
    return 1 if printer.failed else 0
