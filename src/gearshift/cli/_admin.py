"""``gearshift admin``: ``gearadmin``'s options, printed as aligned tables or ``--json``.

Differences from gearadmin: an ``ERR`` reply exits 1 (gearadmin exits 0), listings get
column headers, and ``-h`` may be ``host:port``. Several options may be combined; they run
in the order of the option table below.

gearshift's dead letters (background jobs that failed for good) have options of their
own: ``--dead`` lists them, ``--retry-dead`` queues them again and ``--purge-dead``
forgets them, each for one handle, ``--all`` or ``--function F``. Flow control:
``--pause F``, ``--resume F`` and ``--limits`` (limits, pauses and usage per function).
``--cluster`` lists the servers sharing the server's PostgreSQL store and their leases.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from gearshift.cli._submit import add_server_options, servers_from_args
from gearshift.cli._terminal import print_rich_table, rich_console
from gearshift.cli._tls_options import client_ssl_from_args
from gearshift.client import (
    AdminClient,
    AdminError,
    ClusterServer,
    FunctionLimits,
    GearmanError,
    JobOutcome,
)

#: (admin, the option's value) -> result; dead-letter options get their keyword arguments.
Action = Callable[[AdminClient, Any], Any]

#: option dest -> (action, table headers or None for a one-line value)
ACTIONS: dict[str, tuple[Action, list[str] | None]] = {
    "server_version": (lambda a, _: a.version(), None),
    "server_verbose": (lambda a, _: a.verbose(), None),
    "getpid": (lambda a, _: a.getpid(), None),
    "create_function": (lambda a, v: a.create_function(v), None),
    "drop_function": (lambda a, v: a.drop_function(v), None),
    "cancel_job": (lambda a, v: a.cancel_job(v), None),
    "status": (lambda a, _: a.status(), ["FUNCTION", "TOTAL", "RUNNING", "WORKERS"]),
    "priority_status": (lambda a, _: a.priority_status(),
                        ["FUNCTION", "HIGH", "NORMAL", "LOW", "WORKERS"]),
    "workers": (lambda a, _: a.workers(), ["FD", "IP", "CLIENT_ID", "FUNCTIONS"]),
    "show_jobs": (lambda a, _: a.show_jobs(), ["HANDLE", "RETRIES", "IGNORED", "QUEUED"]),
    "show_unique_jobs": (lambda a, _: a.show_unique_jobs(), ["UNIQUE"]),
    "dead": (lambda a, t: a.dead(t["function"]),
             ["HANDLE", "FUNCTION", "ATTEMPTS", "ENDED", "REASON"]),
    "cluster": (lambda a, _: a.cluster(),
                ["SERVER", "EPOCH", "EXPIRES_IN", "ADOPTED_BY", "THIS"]),
    "retry_dead": (lambda a, t: a.retry_dead(**t), None),
    "purge_dead": (lambda a, t: a.purge_dead(**t), None),
    "pause": (lambda a, v: a.pause(v), None),
    "resume": (lambda a, v: a.resume(v), None),
    "drain": (lambda a, _: a.drain(), None),
    "undrain": (lambda a, _: a.drain(False), None),
    "limits": (lambda a, _: a.limits(),
               ["FUNCTION", "CONCURRENCY", "RATE", "WEIGHT", "PAUSED", "RUNNING", "QUEUED",
                "HELD", "ADMIN"]),
}
#: Options that name dead letters by HANDLE, --all or --function.
TARGETED = {"retry_dead", "purge_dead"}
#: Longest failure reason shown in the --dead table (--json has it whole).
REASON_WIDTH = 60


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("admin", add_help=False, help="admin commands (`gearadmin`)",
                       description="Query and manage a server with gearadmin's options.")
    add_server_options(p)
    p.add_argument("--server-version", action="store_true", help="server version")
    p.add_argument("--server-verbose", action="store_true", help="server log level")
    p.add_argument("--getpid", action="store_true", help="server process id")
    p.add_argument("--create-function", metavar="F", help="create function F")
    p.add_argument("--drop-function", metavar="F", help="drop function F")
    p.add_argument("--cancel-job", metavar="H", help="cancel job handle H")
    p.add_argument("--status", action="store_true", help="jobs and workers per function")
    p.add_argument("--priority-status", action="store_true", help="queued jobs per priority")
    p.add_argument("--workers", action="store_true", help="connections and their functions")
    p.add_argument("--show-jobs", action="store_true", help="every job")
    p.add_argument("--show-unique-jobs", action="store_true", help="unique keys of jobs")
    p.add_argument("--dead", action="store_true",
                   help="dead letters: background jobs that failed for good (gearshift)")
    p.add_argument("--retry-dead", nargs="?", const="", metavar="H",
                   help="queue dead letter H again (or --all, --function F)")
    p.add_argument("--purge-dead", nargs="?", const="", metavar="H",
                   help="forget dead letter H (or --all, --function F)")
    p.add_argument("--pause", metavar="F", help="hand out none of F's jobs until --resume "
                   "(they are still accepted and queued; gearshift)")
    p.add_argument("--resume", metavar="F", help="undo --pause F (gearshift)")
    p.add_argument("--drain", action="store_true",
                   help="refuse new submissions, finish the jobs the server has (gearshift)")
    p.add_argument("--undrain", action="store_true", help="accept submissions again")
    p.add_argument("--limits", action="store_true",
                   help="flow control per function: limits, pauses, usage (gearshift)")
    p.add_argument("--cluster", action="store_true",
                   help="servers sharing this server's store, and their leases (gearshift)")
    p.add_argument("--all", action="store_true", help="with --retry/--purge-dead: every one")
    p.add_argument("--function", metavar="F",
                   help="with --dead/--retry-dead/--purge-dead: only function F's")
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.set_defaults(func=run)


def when(stamp: float | None) -> str:
    """A UNIX time as local ``YYYY-MM-DD HH:MM:SS``; ``-`` for none."""
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                   time.localtime(stamp))


def _dead_row(outcome: JobOutcome) -> list[str]:
    reason = " ".join((outcome.reason or "").split())
    if len(reason) > REASON_WIDTH:
        reason = reason[: REASON_WIDTH - 3] + "..."
    return [outcome.handle, outcome.function, str(outcome.attempts), when(outcome.ended),
            reason or "-"]


def _limits_row(limits: FunctionLimits) -> list[str]:
    return [limits.function, "-" if limits.concurrency is None else str(limits.concurrency),
            limits.rate or "-", str(limits.weight), "yes" if limits.paused else "no",
            str(limits.running), str(limits.queued), "yes" if limits.held else "no",
            limits.admin or "-"]


def _cluster_row(server: ClusterServer) -> list[str]:
    return [server.server_id, str(server.epoch), f"{server.expires_in:.1f}s",
            server.adopted_by or "-", "yes" if server.is_self else ""]


ROWS: dict[str, Callable[[Any], list[str]]] = {"dead": _dead_row, "limits": _limits_row,
                                              "cluster": _cluster_row}


def _argument(dest: str, value: Any, args: argparse.Namespace) -> Any:
    """What the action of ``dest`` gets: the option's text, or the dead-letter target.

    Raises ValueError when a retry/purge names no dead letters or more than one way."""
    if dest == "dead":
        return {"function": args.function}
    if dest in TARGETED:
        chosen = (value != "") + args.all + (args.function is not None)
        if chosen != 1:
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} needs exactly one of: a handle, --all, --function F")
        return {"handle": value or None, "all": args.all, "function": args.function}
    return value if isinstance(value, str) else ""


def _cells(row: Any) -> list[str]:
    if isinstance(row, str):
        return [row]
    if isinstance(row, list):
        return row
    out = []
    for value in dataclasses.astuple(row):
        if isinstance(value, tuple):
            out.append(" ".join(value))
        elif isinstance(value, bool):
            out.append("yes" if value else "no")
        else:
            out.append(str(value))
    return out


def table(headers: Sequence[str], rows: Sequence[Any]) -> str:
    """Rows as left-aligned columns (numbers right-aligned) under a header line."""
    body = [_cells(r) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    numeric = [bool(body) and all(r[i].isdigit() for r in body) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric, strict=True)).rstrip()
    return "\n".join([line(headers), *(line(r) for r in body)]) + "\n"


def show_table(headers: Sequence[str], rows: Sequence[Any]) -> None:
    """A rich table on a terminal (with the ``cli`` extra), else :func:`table`'s text."""
    console = rich_console(sys.stdout)
    if console is None:
        sys.stdout.write(table(headers, rows))
    else:
        print_rich_table(console, headers, [_cells(r) for r in rows])


def _why_not_dropped(admin: AdminClient, function: str) -> str:
    """What keeps ``function`` from being dropped. The server's ERR text is gearmand's
    ("there are still connected workers or executing clients") whatever the cause, and
    the usual cause is queued jobs, so say which counts are not 0."""
    try:
        row = next((s for s in admin.status() if s.function == function), None)
    except GearmanError:
        return ""
    if row is None:
        return ""  # the server said so already ("function not found")
    return (f" ({function}: {row.total} job(s) queued or running, {row.workers} worker(s); "
            "it can be dropped once both are 0)")


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [v.to_json() if hasattr(v, "to_json")
                else _record(v) if dataclasses.is_dataclass(v)
                and not isinstance(v, type) else v for v in value]
    return "OK" if value is None else value


def _record(value: Any) -> dict[str, Any]:
    """A listing row as JSON. The text protocol prints ``-`` for a connection that set
    no client id; JSON says null instead, so scripts need not know that convention."""
    record: dict[str, Any] = dataclasses.asdict(value)
    if record.get("client_id") == "-":
        record["client_id"] = None
    return record


def run(args: argparse.Namespace) -> int:
    chosen = [(dest, value) for dest in ACTIONS
              if (value := getattr(args, dest)) not in (None, False)]
    if not chosen:
        sys.stderr.write("gearshift admin: give at least one command option (see --help)\n")
        return 1
    try:
        address = servers_from_args(args)[0]
        tls = client_ssl_from_args(args)
        arguments = {dest: _argument(dest, value, args) for dest, value in chosen}
    except ValueError as exc:
        sys.stderr.write(f"gearshift admin: {exc}\n")
        return 2
    results: dict[str, Any] = {}
    status = 0
    try:
        with AdminClient(address, ssl=tls) as admin:
            for dest, _ in chosen:
                action, headers = ACTIONS[dest]
                try:
                    result = action(admin, arguments[dest])
                except AdminError as exc:
                    status = 1
                    results[dest] = {"error": exc.code, "text": exc.text}
                    if not args.json:
                        hint = _why_not_dropped(admin, args.drop_function) \
                            if dest == "drop_function" else ""
                        sys.stderr.write(f"Error: {exc}{hint}\n")
                    continue
                results[dest] = _jsonable(result)
                if args.json:
                    continue
                if headers is None:
                    sys.stdout.write(f"{'OK' if result is None else result}\n")
                else:
                    row = ROWS.get(dest)
                    show_table(headers, result if row is None else [row(r) for r in result])
    except GearmanError as exc:
        sys.stderr.write(f"gearshift admin: {exc}\n")
        return 1
    if args.json:
        json.dump(results, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    return status
