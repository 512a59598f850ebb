"""The in-process store: ``--store memory`` (gearmand's ``builtin``), nothing survives exit.

It is the reference implementation of the contract, so the conformance suite runs
against it too and a backend that disagrees with it is the one that is wrong.
"""

from __future__ import annotations

from gearshift.store._base import Batch, Store, StoredJob, StoreError


class MemoryStore(Store):
    """Jobs in a dict (insertion-ordered); the boot counter lives as long as the object."""

    def __init__(self, url: str = "memory") -> None:
        self.description = "memory"
        self._jobs: dict[bytes, StoredJob] = {}
        self._boot = 0

    async def open(self) -> None:
        return None

    async def boot(self) -> int:
        self._boot += 1
        return self._boot

    async def load(self) -> list[StoredJob]:
        return [StoredJob(j.handle, j.function, j.unique, j.data, j.priority, j.when,
                          j.reducer, j.retries) for j in self._jobs.values()]

    async def apply(self, batch: Batch) -> None:
        batch = batch.normalized()
        seen: set[bytes] = set()
        for job in batch.adds:
            if job.handle in self._jobs or job.handle in seen:
                raise StoreError(f"memory store: job handle {job.handle!r} already stored")
            seen.add(job.handle)
        for job in batch.adds:
            self._jobs[job.handle] = job
        for handle in batch.removes:
            self._jobs.pop(handle, None)
        for handle, count in batch.retries.items():
            if handle in self._jobs:
                self._jobs[handle].retries = count

    async def close(self) -> None:
        return None
