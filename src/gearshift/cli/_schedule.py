"""``gearshift schedule add|list|rm``: cron schedules of background jobs on a server.

A thin layer over the admin library's ``add_schedule``/``schedules``/``remove_schedule``
(the server's ``schedule`` text commands), so that schedules can be managed from shell
scripts and crontab migrations. Errors the server reports (a bad cron field, an unknown
key) are printed as the server words them, with exit status 1; a malformed command line
exits 2, as argparse does.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from gearshift.cli._admin import table, when
from gearshift.cli._submit import add_server_options, servers_from_args
from gearshift.cli._tls_options import client_ssl_from_args
from gearshift.client import AdminClient, GearmanError, Schedule

HEADERS = ["KEY", "FUNCTION", "CRON", "NEXT", "LAST_FIRED", "PRIORITY", "UNIQUE"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schedule", add_help=False, help="cron schedules of background jobs",
                       description="Add, list and remove a server's cron schedules.")
    p.add_argument("--help", action="help", help="show this help and exit")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    # Server options on each verb, so they may follow it: `schedule list -h host`.
    add = verbs.add_parser("add", add_help=False,
                           help="submit FUNCTION at every minute CRON matches",
                           description="Add a schedule; prints its key.")
    add_server_options(add)
    add.add_argument("function", metavar="FUNCTION")
    add.add_argument("cron", metavar="CRON",
                     help='five fields "MIN HOUR DOM MON DOW" (0 = Sunday), quoted')
    add.add_argument("data", metavar="DATA", nargs="?", default="",
                     help="the workload of every job (default: empty)")
    add.add_argument("--unique", default="", metavar="U",
                     help="unique key of each job it submits")
    add.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    listing = verbs.add_parser("list", add_help=False,
                               help="every schedule, with its next firing time")
    add_server_options(listing)
    listing.add_argument("--json", action="store_true", help="JSON, for scripts")
    rm = verbs.add_parser("rm", add_help=False, help="remove a schedule")
    add_server_options(rm)
    rm.add_argument("key", metavar="KEY")
    p.set_defaults(func=run)


def _row(schedule: Schedule) -> list[str]:
    return [schedule.key, schedule.function, schedule.cron, when(schedule.next_run),
            when(schedule.last_fired), schedule.priority.value, schedule.unique or "-"]


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        address = servers_from_args(args)[0]
        tls = client_ssl_from_args(args)
    except ValueError as exc:
        err.write(f"gearshift schedule: {exc}\n")
        return 2
    try:
        with AdminClient(address, ssl=tls) as admin:
            if args.verb == "add":
                out.write(admin.add_schedule(args.function, args.cron, args.data.encode(),
                                             unique=args.unique, priority=args.priority)
                          + "\n")
            elif args.verb == "rm":
                admin.remove_schedule(args.key)
            elif args.json:
                json.dump([s.to_json() for s in admin.schedules()], out, indent=2)
                out.write("\n")
            else:
                out.write(table(HEADERS, [_row(s) for s in admin.schedules()]))
    except ValueError as exc:
        err.write(f"gearshift schedule: {exc}\n")
        return 2
    except GearmanError as exc:  # AdminError: the server's words, e.g. a cron's bad field
        err.write(f"gearshift schedule: {exc}\n")
        return 1
    return 0
