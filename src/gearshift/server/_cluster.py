"""Several servers on one store: keeping this server's lease, adopting dead servers' jobs.

A store shared by several servers (PostgreSQL) gives each server a lease, judged by the
database's clock. :class:`LeaseKeeper` renews it every ``lease / 3`` seconds; the same
renewal adopts the queued and running background jobs of servers whose lease expired,
and they are queued here as if replayed at startup (a job that was running on the dead
server runs again: at-least-once).

Fencing. The broker hands out no job once its local lease deadline has passed
(``Broker.lease_until``: the time the last successful renewal was *sent* plus the lease,
less a margin), so a server that was paused or cut off from the database stops
dispatching before any other server can adopt its jobs. When a renewal (or a batch)
finds that the lease epoch moved on, another server owns the jobs now: this server logs
it and stops (exit status 3, so a supervisor restarts it; on restart it claims a new
epoch and owns nothing it lost). Running jobs on its workers may still finish there:
those, and only those, can run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gearshift.broker import Broker

if TYPE_CHECKING:
    from gearshift.store import FencedError, Store, StoredJob

log = logging.getLogger("gearshift.server")

#: The part of the lease kept in hand: the broker stops dispatching this much before
#: the database could declare the lease expired (clock rate differences, scheduling).
LEASE_MARGIN = 0.2


def local_deadline(sent: float, lease: float) -> float:
    """Until when a lease renewed by a request sent at ``sent`` surely holds."""
    return sent + lease * (1.0 - LEASE_MARGIN)


def restore_jobs(broker: Broker, jobs: list[StoredJob]) -> None:
    """Queue stored jobs in the broker, keeping their handles (replay and adoption)."""
    for job in jobs:
        broker.restore(job.handle, job.function, job.unique, job.data, job.priority,
                       job.when, job.reducer, job.retries, job.submitted)


class LeaseKeeper:
    """Renews the lease and adopts orphaned jobs until closed or fenced."""

    def __init__(self, store: Store, broker: Broker, lease: float,
                 on_change: Callable[[], None],
                 on_fenced: Callable[[FencedError], None]) -> None:
        self.store = store
        self.broker = broker
        self.lease = lease
        self.on_change = on_change
        self.on_fenced = on_fenced
        self.renewals = 0
        self.fenced = False
        self.adopted = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self, claimed_at: float) -> None:
        """Begin renewing; ``claimed_at`` is when the claim was sent (clock time)."""
        self.broker.lease_renewed(local_deadline(claimed_at, self.lease))
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="gearshift-lease")

    async def _run(self) -> None:
        from gearshift.store import FencedError, StoreError

        interval = self.lease / 3
        while True:
            # Woken early only to stop: a renewal is never cancelled half-way (that
            # would leave the store's connection mid-statement).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                return
            sent = self.broker.clock()
            started = time.monotonic()
            try:
                dead, jobs = await self.store.renew()
            except FencedError as exc:
                self.fenced = True
                self.on_fenced(exc)
                return
            except StoreError as exc:
                log.error("lease renewal failed (no jobs are handed out once the lease "
                          "runs out, %.1fs after the last renewal): %s", self.lease, exc)
                continue
            self.renewals += 1
            took = time.monotonic() - started
            if took > interval:
                log.warning("lease renewal took %.2fs (lease %.1fs)", took, self.lease)
            self.broker.lease_renewed(local_deadline(sent, self.lease))
            self.broker.cluster = [(i.server_id, i.epoch, sent + i.expires_in, i.adopted_by)
                                   for i in self.store.cluster_view()]
            if dead:
                self.adopted += len(jobs)
                log.warning("adopted %d stored background jobs of server(s) %s, whose "
                            "lease expired", len(jobs), ", ".join(dead))
                restore_jobs(self.broker, jobs)
            self.on_change()

    async def close(self) -> None:
        """Stop renewing and hand the lease back, so a live server adopts at once."""
        from gearshift.store import StoreError

        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()
        await task
        if self.fenced:
            return  # the lease is someone else's: nothing to hand back
        with contextlib.suppress(StoreError):
            await self.store.release()
