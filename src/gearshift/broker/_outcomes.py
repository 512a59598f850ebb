"""How background jobs ended: kept outcomes and the dead-letter set.

A background job's client is gone by the time it ends, so the server keeps what
happened for ``--keep-results`` (default an hour): the state, the result data or the
failure's reason, attempts and timestamps. A job that failed for good (its retry policy
exhausted, or its first failure with no policy) is a *dead letter*: kept, with what is
needed to run it again and every attempt's reason, until an operator retries or purges
it. Both are bounded by a byte budget each, the oldest going first, so a flood of
results cannot grow the server without limit. No I/O: the broker tells its store hooks
what to write and what to delete.
"""

from __future__ import annotations

from typing import Final

COMPLETE: Final = "complete"
FAILED: Final = "failed"
EXCEPTION: Final = "exception"
CANCELLED: Final = "cancelled"
DEAD: Final = "dead"

#: Bytes counted per record on top of its byte strings (the object, dict entry, floats).
RECORD_OVERHEAD: Final = 240


class Outcome:
    """One ended background job (see :class:`gearshift.store.StoredOutcome`, its stored
    form, for the fields)."""

    __slots__ = ("attempts", "data", "dead", "ended", "function", "handle", "priority",
                 "reasons", "reducer", "result", "started", "state", "submitted", "unique")

    def __init__(self, handle: bytes, function: bytes, unique: bytes, state: str,
                 result: bytes, attempts: int, submitted: float, started: float,
                 ended: float, dead: bool = False, data: bytes = b"", priority: int = 1,
                 reducer: bytes = b"", reasons: list[bytes] | None = None) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.state = state
        self.result = result
        self.attempts = attempts
        self.submitted = submitted
        self.started = started
        self.ended = ended
        self.dead = dead
        self.data = data
        self.priority = priority
        self.reducer = reducer
        self.reasons: list[bytes] = reasons if reasons is not None else []

    @property
    def size(self) -> int:
        """What the record costs against its budget, roughly in bytes of memory."""
        return (RECORD_OVERHEAD + len(self.handle) + len(self.function) + len(self.unique)
                + len(self.result) + len(self.data) + len(self.reducer)
                + sum(len(r) + 40 for r in self.reasons))

    def __repr__(self) -> str:
        return f"<Outcome {self.handle!r} {self.state}{' dead' if self.dead else ''}>"


class OutcomeBook:
    """Kept outcomes (expiring) and dead letters (kept until retried or purged).

    Args:
        keep: seconds an outcome is kept after its job ended; 0 keeps none.
        max_bytes: budget of kept outcomes; beyond it the oldest are dropped early.
        dead_max_bytes: budget of dead letters; beyond it the oldest are dropped.

    Every method that drops records returns them, so the caller can delete them from
    the store too.
    """

    __slots__ = ("dead", "dead_bytes", "dead_max_bytes", "evicted", "keep", "max_bytes",
                 "results", "results_bytes")

    def __init__(self, keep: float = 3600.0, max_bytes: int = 64 << 20,
                 dead_max_bytes: int = 64 << 20) -> None:
        self.keep = keep
        self.max_bytes = max_bytes
        self.dead_max_bytes = dead_max_bytes
        # Insertion order is end order (a re-put record moves to the end), so expiry and
        # eviction pop from the front.
        self.results: dict[bytes, Outcome] = {}
        self.dead: dict[bytes, Outcome] = {}
        self.results_bytes = 0
        self.dead_bytes = 0
        #: Records dropped before their time by a budget (for logs and metrics).
        self.evicted = 0

    def get(self, handle: bytes) -> Outcome | None:
        found = self.results.get(handle)
        return found if found is not None else self.dead.get(handle)

    def put(self, outcome: Outcome) -> list[Outcome]:
        """Keep ``outcome`` (a dead letter if ``outcome.dead``); returns what the budgets
        pushed out (possibly ``outcome`` itself, when it alone is over budget or nothing
        is kept)."""
        self.discard(outcome.handle)
        if outcome.dead:
            self.dead[outcome.handle] = outcome
            self.dead_bytes += outcome.size
            return self._trim(self.dead, self.dead_max_bytes, True)
        if self.keep <= 0:
            return [outcome]
        self.results[outcome.handle] = outcome
        self.results_bytes += outcome.size
        if self.results_bytes > self.max_bytes:
            return self._trim(self.results, self.max_bytes, False)
        return []

    def discard(self, handle: bytes) -> Outcome | None:
        """Forget the record of ``handle`` (retried, purged, or replaced)."""
        found = self.results.pop(handle, None)
        if found is not None:
            self.results_bytes -= found.size
            return found
        found = self.dead.pop(handle, None)
        if found is not None:
            self.dead_bytes -= found.size
        return found

    def expire(self, now: float) -> list[Outcome]:
        """Drop the outcomes (not dead letters) that ended ``keep`` seconds before ``now``."""
        gone: list[Outcome] = []
        results = self.results
        limit = now - self.keep
        while results:
            oldest = next(iter(results.values()))
            if oldest.ended > limit:
                break
            del results[oldest.handle]
            self.results_bytes -= oldest.size
            gone.append(oldest)
        return gone

    def next_expiry(self) -> float | None:
        """When the oldest kept outcome expires, or None."""
        for oldest in self.results.values():
            return oldest.ended + self.keep
        return None

    def _trim(self, records: dict[bytes, Outcome], budget: int, dead: bool) -> list[Outcome]:
        gone: list[Outcome] = []
        while records and (self.dead_bytes if dead else self.results_bytes) > budget:
            oldest = next(iter(records.values()))
            del records[oldest.handle]
            if dead:
                self.dead_bytes -= oldest.size
            else:
                self.results_bytes -= oldest.size
            gone.append(oldest)
        self.evicted += len(gone)
        return gone

    def __len__(self) -> int:
        return len(self.results) + len(self.dead)
