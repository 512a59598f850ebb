"""Raw durable-store throughput with group commit, per backend (no Gearman server).

Each simulated submitter loops: add a job through the GroupCommitter and wait until it
is committed (what a client waits for before JOB_CREATED), then queue its removal (what
WORK_COMPLETE does). A "durable job" is one add plus one remove, both committed. Run
with one submitter (every job is its own transaction, like gearmand's plugins) and
with many (group commit). Prints numbers only; it is a benchmark, not a test.

Usage::

    python benchmarks/store_bench.py [--jobs 20000] [--concurrency 1,256] \
        [--backends sqlite,postgresql,mysql,redis,memcached] [--payload 100]

``postgresql-shared`` is PostgreSQL as a server of several on one store uses it (claimed
under a server id: every row gets an owner, every batch is fenced by the lease epoch), to
compare against plain ``postgresql``.

PostgreSQL/MariaDB/Redis are the machine's loopback services (override with
--pg/--mysql/--redis); memcached is started on a free port and stopped afterwards.
Each run uses a fresh table or key prefix and removes it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from gearshift.store import GroupCommitter, StoredJob, open_store
from gearshift.testing import free_port


@contextmanager
def memcached() -> Iterator[str]:
    port = free_port()
    user = ["-u", "root"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1",
                             "-M", "-m", "512", *user])
    try:
        time.sleep(0.3)
        yield f"memcached://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def drop(url: str, tag: str) -> None:
    """Remove the benchmark's tables (the queue, ``_meta``, ``_outcomes``,
    ``_schedules``) or keys."""
    tables = ", ".join(tag + suffix for suffix in ("", "_meta", "_outcomes", "_schedules",
                                                   "_leases"))
    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url.split("?")[0])
        await conn.execute(f"DROP TABLE IF EXISTS {tables}")
        await conn.close()
    elif url.startswith("mysql"):
        import aiomysql

        conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", db="test")
        async with conn.cursor() as cur:
            await cur.execute(f"DROP TABLE IF EXISTS {tables}")
        conn.close()
    elif url.startswith("redis"):
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url.split("?")[0])
        keys = [k async for k in client.scan_iter(match=tag + ":*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i:i + 1000])
        await client.aclose()


async def measure(url: str, data_dir: str, jobs: int, concurrency: int,
                  payload: bytes, claim: bool = False) -> tuple[float, GroupCommitter]:
    store = open_store(url, data_dir=data_dir)
    await store.open()
    if claim:
        await store.claim("bench", 5.0)
    boot = await store.boot()
    committer = GroupCommitter(store)
    counter = iter(range(jobs))

    async def submitter() -> None:
        for n in counter:
            handle = f"H:bench:{boot}.{n}".encode()
            await committer.add(StoredJob(handle, b"bench", b"u%d" % n, payload, 1, 0))
            committer.remove(handle)

    start = time.perf_counter()
    await asyncio.gather(*(submitter() for _ in range(concurrency)))
    await committer.flush()
    elapsed = time.perf_counter() - start
    left = len(await store.load())
    await store.close()
    if left:
        raise RuntimeError(f"{url}: {left} jobs left in the store after the run")
    return jobs / elapsed, committer


def url_for(backend: str, args: argparse.Namespace, tag: str, tmp: str, mc: str) -> str:
    return {
        "sqlite": f"sqlite://{tmp}/{tag}.db",
        "postgresql": f"{args.pg}?table={tag}",
        "postgresql-shared": f"{args.pg}?table={tag}",
        "mysql": f"{args.mysql}?table={tag}",
        "redis": f"{args.redis}?prefix={tag}:",
        "memcached": f"{mc}?prefix={tag}:",
    }[backend]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--single-jobs", type=int, default=1000,
                        help="jobs for the concurrency-1 runs (one commit per job is slow)")
    parser.add_argument("--concurrency", default="1,256")
    parser.add_argument("--backends", default="sqlite,postgresql,mysql,redis,memcached")
    parser.add_argument("--payload", type=int, default=100, help="bytes of data per job")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mysql", default="mysql://root@127.0.0.1:3306/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    payload = os.urandom(args.payload)
    tmp = tempfile.mkdtemp(prefix="store-bench-")
    print(f"{'backend':<17} {'submitters':>10} {'jobs':>7} {'jobs/s':>10} {'commits':>8} "
          f"{'avg batch':>9}")
    try:
        with memcached() as mc:
            for backend in args.backends.split(","):
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    jobs = args.single_jobs if concurrency == 1 else args.jobs
                    tag = "bench" + uuid.uuid4().hex[:8]
                    url = url_for(backend, args, tag, tmp, mc)
                    try:
                        rate, committer = asyncio.run(
                            measure(url, tmp, jobs, concurrency, payload,
                                    claim=backend.endswith("-shared")))
                    finally:
                        asyncio.run(drop(url, tag))
                    ops = 2 * jobs
                    print(f"{backend:<17} {concurrency:>10} {jobs:>7} {rate:>10,.0f} "
                          f"{committer.commits:>8} {ops / max(committer.commits, 1):>9.1f}",
                          flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
