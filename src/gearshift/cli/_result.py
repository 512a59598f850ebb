"""``gearshift result HANDLE``: how a background job went, as an exit status for scripts.

``gearman -b`` prints a handle and forgets the job; this reads it back from the server's
kept outcomes (``gearshift serve --keep-results``). The exit status is the answer, so a
shell script can branch on it without parsing anything:

    0  complete: the result data is written to stdout, byte for byte
    1  failed, raised, cancelled or dead: the reason goes to stderr
    2  no server knows the handle (never existed, expired, or not a handle at all)
    3  still queued, running or scheduled (no --wait, or --wait ran out)
    4  no server could be asked (connection refused, timeout, not a gearshift server)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from gearshift.cli._submit import add_server_options, servers_from_args
from gearshift.cli._tls_options import client_ssl_from_args
from gearshift.client import Client, GearmanError, JobOutcome, UnknownJob

COMPLETE, FAILED, UNKNOWN, UNFINISHED, UNREACHABLE = 0, 1, 2, 3, 4


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "result", add_help=False, help="a background job's result or failure",
        description="Print a background job's result (stdout) or failure reason (stderr).",
        epilog="exit status:\n  0  complete (the data is on stdout)\n"
               "  1  failed, exception, cancelled or dead (the reason is on stderr)\n"
               "  2  unknown or expired handle\n  3  not finished yet\n"
               "  4  no server could be asked",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_server_options(p)
    p.add_argument("handle", metavar="HANDLE", help="the job handle (`submit -b -v` prints it)")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                   help="wait up to SECONDS for the job to end")
    p.add_argument("--json", action="store_true",
                   help="print the whole outcome as JSON (data base64 in data_b64)")
    p.set_defaults(func=run)


def exit_status(outcome: JobOutcome) -> int:
    if outcome.ok:
        return COMPLETE
    return FAILED if outcome.done else UNFINISHED


def describe(outcome: JobOutcome) -> str:
    """One line for stderr: what state the job is in, and why it failed if it did."""
    text = f"job {outcome.handle} ({outcome.function}) {outcome.state}"
    if outcome.dead:
        text += f", a dead letter after {outcome.attempts} attempt(s)"
    if outcome.reason:
        text += f": {outcome.reason}"
    return text + "\n"


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    if args.wait is not None and args.wait < 0:
        err.write("gearshift result: --wait must not be negative\n")
        return UNKNOWN
    try:
        servers = servers_from_args(args)
        tls = client_ssl_from_args(args)
    except ValueError as exc:
        err.write(f"gearshift result: {exc}\n")
        return UNKNOWN
    try:
        with Client(servers, ssl=tls) as client:
            outcome = client.result(args.handle, wait=args.wait)
    except UnknownJob as exc:
        err.write(f"gearshift result: {exc.text or 'unknown job'}\n")
        return UNKNOWN
    except GearmanError as exc:
        err.write(f"gearshift result: {exc}\n")
        return UNREACHABLE
    status = exit_status(outcome)
    if args.json:
        json.dump(outcome.to_json(), out, indent=2, sort_keys=True)
        out.write("\n")
        return status
    if status == COMPLETE:
        out.flush()
        out.buffer.write(outcome.data)
        out.buffer.flush()
    else:
        err.write(describe(outcome))
    return status
