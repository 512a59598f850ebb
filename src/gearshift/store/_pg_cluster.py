"""Several servers on one PostgreSQL store: leases, adoption and fencing, in SQL.

Each server has a row in ``<table>_leases``: its id, an epoch (the fencing token) and
when its lease expires, judged by the database's clock (``now()``), so clock skew
between the servers does not matter. Each stored job row names its ``owner``.

* **claim** (startup): insert the lease row or take it back with ``epoch + 1``, which
  fences any older process with the same id; legacy rows without an owner become ours.
* **renew** (every lease/3 s): one statement extends our lease if our epoch is still
  current and lists the expired leases nobody has adopted yet.
* **adopt** (only when renew found some): one transaction first re-checks our own lease
  (``FOR SHARE``), then bumps each dead server's epoch and marks it adopted, then moves
  its rows to us. The bump waits for any batch the dead server still has in flight
  (every batch holds a ``FOR SHARE`` lock on its own lease row, see
  :func:`fence_cte`), and the move runs as a later statement, with a snapshot that sees
  that batch's rows: nothing the dead server wrote is left behind.
* **fencing**: every batch of a claimed store runs only while its lease row still has
  our epoch (:func:`fence_cte`); otherwise it writes nothing and the store raises
  :class:`FencedError`.
"""

from __future__ import annotations

from typing import Any

from gearshift.store._base import FencedError, LeaseInfo, StoredJob

#: The columns of a job row as StoredJob takes them, then its insertion order.
JOB_COLUMNS = ("handle, function, unique_key, data, priority, when_to_run, reducer, retries, "
               "submitted")


def lease_schema(t: str) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {t}_leases (server_id TEXT PRIMARY KEY, "
            "epoch BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL, "
            "started TIMESTAMPTZ NOT NULL DEFAULT now(), adopted_by TEXT)")


def fence_cte(t: str, id_arg: int, epoch_arg: int) -> str:
    """The CTE ``ok``: one row while our lease epoch is current, locked until commit.

    ``FOR SHARE`` makes an adopter's epoch bump wait for this batch to commit, so the
    adopter's next statement sees the rows the batch wrote.
    """
    return (f"ok AS (SELECT 1 FROM {t}_leases WHERE server_id = ${id_arg} "
            f"AND epoch = ${epoch_arg} FOR SHARE)")


def fenced(server_id: str, epoch: int, description: str) -> FencedError:
    return FencedError(
        f"{description}: server id {server_id!r} lost its lease (epoch {epoch} is no "
        "longer current): another server adopted its stored jobs, or another process "
        "started with the same --server-id")


async def claim(conn: Any, t: str, server_id: str, lease: float) -> tuple[int, bool]:
    """Register or take back ``server_id``'s lease; returns (epoch, was it still live)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"SELECT expires_at > now() FROM {t}_leases WHERE server_id = $1 FOR UPDATE",
            server_id)
        epoch: int = await conn.fetchval(
            f"INSERT INTO {t}_leases (server_id, epoch, expires_at) "
            "VALUES ($1, 1, now() + make_interval(secs => $2)) ON CONFLICT (server_id) "
            f"DO UPDATE SET epoch = {t}_leases.epoch + 1, expires_at = EXCLUDED.expires_at, "
            "started = now(), adopted_by = NULL RETURNING epoch", server_id, lease)
        # Rows written before servers had owners (or by `gearshift import`) are ours.
        await conn.execute(f"UPDATE {t} SET owner = $1 WHERE owner IS NULL", server_id)
    return epoch, bool(row and row[0])


async def renew(conn: Any, t: str, server_id: str, epoch: int, lease: float
                ) -> tuple[bool, list[LeaseInfo]]:
    """Extend our lease (if our epoch is current); every server's lease as it is now
    (``jobs`` -1: not counted, that would read the whole job table)."""
    row = await conn.fetchrow(
        f"WITH mine AS (UPDATE {t}_leases SET expires_at = now() + make_interval(secs => $3) "
        "WHERE server_id = $1 AND epoch = $2 RETURNING 1) "
        "SELECT (SELECT count(*) FROM mine), "
        "ARRAY(SELECT ROW(server_id, epoch, "
        "EXTRACT(EPOCH FROM expires_at - now())::float8, COALESCE(adopted_by, '')) "
        f"FROM {t}_leases ORDER BY server_id)",
        server_id, epoch, lease)
    infos = [LeaseInfo(str(r[0]), int(r[1]), float(r[2]), str(r[3]), -1) for r in row[1]]
    return bool(row[0]), infos


def expired(infos: list[LeaseInfo], server_id: str) -> list[str]:
    """The servers whose lease expired and that nobody adopted yet (not us)."""
    return [i.server_id for i in infos
            if i.expires_in < 0 and not i.adopted_by and i.server_id != server_id]


async def adopt(conn: Any, t: str, server_id: str, epoch: int, dead: list[str],
                description: str) -> tuple[list[str], list[StoredJob]]:
    """Take over the jobs of the ``dead`` servers whose lease is still expired.

    Returns the servers adopted and their jobs, in insertion order.
    """
    async with conn.transaction():
        mine = await conn.fetchval(f"SELECT 1 FROM {t}_leases WHERE server_id = $1 AND "
                                   "epoch = $2 FOR SHARE", server_id, epoch)
        if mine is None:
            raise fenced(server_id, epoch, description)
        taken = [r[0] for r in await conn.fetch(
            f"UPDATE {t}_leases SET epoch = epoch + 1, adopted_by = $1 "
            "WHERE server_id = ANY($2::text[]) AND expires_at < now() AND adopted_by IS NULL "
            "RETURNING server_id", server_id, dead)]
        if not taken:
            return [], []
        rows = await conn.fetch(
            f"UPDATE {t} SET owner = $1 WHERE owner = ANY($2::text[]) "
            f"RETURNING seq, {JOB_COLUMNS}", server_id, taken)
    rows = sorted(rows, key=lambda r: r[0])
    return taken, [StoredJob(*row[1:]) for row in rows]


async def release(conn: Any, t: str, server_id: str, epoch: int) -> None:
    """Expire our lease now (clean shutdown): a live server adopts what is left."""
    await conn.execute(f"UPDATE {t}_leases SET expires_at = now() - interval '1 second' "
                       "WHERE server_id = $1 AND epoch = $2", server_id, epoch)


async def leases(conn: Any, t: str) -> list[LeaseInfo]:
    rows = await conn.fetch(
        "SELECT l.server_id, l.epoch, "
        "EXTRACT(EPOCH FROM l.expires_at - now())::float8, COALESCE(l.adopted_by, ''), "
        f"(SELECT count(*) FROM {t} j WHERE j.owner = l.server_id) "
        f"FROM {t}_leases l ORDER BY l.server_id")
    return [LeaseInfo(*row) for row in rows]
