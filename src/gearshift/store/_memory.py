"""The in-process store: ``--store memory`` (gearmand's ``builtin``), nothing survives exit.

It is the reference implementation of the contract, so the conformance suite runs
against it too and a backend that disagrees with it is the one that is wrong.
"""

from __future__ import annotations

import dataclasses

from gearshift.store._base import (
    Batch,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
)


class MemoryStore(Store):
    """Jobs in a dict (insertion-ordered); the boot counter lives as long as the object."""

    def __init__(self, url: str = "memory") -> None:
        self.description = "memory"
        self._jobs: dict[bytes, StoredJob] = {}
        self._outcomes: dict[bytes, StoredOutcome] = {}
        self._schedules: dict[bytes, StoredSchedule] = {}
        self._flows: dict[bytes, str] = {}
        self._boot = 0

    async def open(self) -> None:
        return None

    async def boot(self) -> int:
        self._boot += 1
        return self._boot

    async def load(self) -> list[StoredJob]:
        return [dataclasses.replace(j) for j in self._jobs.values()]

    async def load_outcomes(self) -> list[StoredOutcome]:
        outcomes = [dataclasses.replace(o, reasons=list(o.reasons))
                    for o in self._outcomes.values()]
        return sorted(outcomes, key=lambda o: o.ended)

    async def load_schedules(self) -> list[StoredSchedule]:
        return [dataclasses.replace(s) for s in self._schedules.values()]

    async def load_flows(self) -> dict[bytes, str]:
        return dict(self._flows)

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
        for handle, when in batch.when.items():
            if handle in self._jobs:
                self._jobs[handle].when = when
        for handle, outcome in batch.outcomes.items():
            self._outcomes.pop(handle, None)  # a replaced outcome moves to the end
            if outcome is not None:
                self._outcomes[handle] = outcome
        for key, schedule in batch.schedules.items():
            if schedule is None:
                self._schedules.pop(key, None)
            else:
                self._schedules[key] = schedule
        self._apply_flows(batch)

    def _apply_flows(self, batch: Batch) -> None:
        for name, setting in batch.flows.items():
            if setting is None:
                self._flows.pop(name, None)
            else:
                self._flows[name] = setting  # a replaced setting keeps its place

    async def close(self) -> None:
        return None
