"""``gearshift import``: move the jobs queued in a gearmand install into a gearshift store.

Stop gearmand first (it keeps its queue in memory and writes only changes), run the
import, then start ``gearshift serve`` on the same store: it replays the jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from gearshift.store import StoreError, open_store, redact
from gearshift.store._open import DRIVERS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import", help="import a gearmand persistent queue into a gearshift store",
        description="Read the jobs queued in gearmand's SQLite, MySQL, PostgreSQL or Redis "
                    "queue and write them into a gearshift store with fresh handles. Jobs "
                    "already present (same function and unique key) are skipped.")
    parser.add_argument("--from", dest="source", required=True, metavar="URL",
                        help="gearmand-sqlite:///path.db, gearmand-mysql://user@host/db, "
                             "gearmand-postgres://user@host/db or gearmand-redis://host:port")
    parser.add_argument("--to", dest="target", default="sqlite", metavar="STORE",
                        help="gearshift store URL (default: sqlite, i.e. <data-dir>/queue.db)")
    parser.add_argument("--table", help="gearmand's table (default gearman_queue; postgres: "
                                        "queue)")
    parser.add_argument("--prefix", help="gearmand's redis key prefix (default _gear_)")
    parser.add_argument("--data-dir", default=None,
                        help="data directory for --to sqlite (default: as gearshift serve)")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and count the jobs, write nothing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (StoreError, ValueError, OSError) as exc:
        print(f"gearshift import: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # a gearmand queue's driver (read_gearmand_queue)
        extras = dict(DRIVERS.values())
        hint = f" (pip install 'gearshift[{extras[exc.name]}]')" if exc.name in extras else ""
        print(f"gearshift import: {exc}{hint}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    from gearshift.store._gearmand import import_jobs, read_gearmand_queue

    jobs = await read_gearmand_queue(args.source, table=args.table, prefix=args.prefix)
    if args.dry_run:
        print(f"{len(jobs)} jobs in {redact(args.source)}")
        return 0
    data_dir = args.data_dir
    if data_dir is None:
        from gearshift.server import default_data_dir

        data_dir = default_data_dir()
    os.makedirs(data_dir, exist_ok=True)  # as serve does: the data dir may not exist yet
    store = open_store(args.target, data_dir=data_dir)
    await store.open()
    try:
        imported, skipped = await import_jobs(jobs, store)
    finally:
        await store.close()
    print(f"imported {imported} jobs from {redact(args.source)} into {redact(args.target)}"
          + (f" ({skipped} already present, skipped)" if skipped else ""))
    return 0
