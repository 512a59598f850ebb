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

from typing import Any, Final

#: A kept outcome that is not a dead letter, as the book holds it: (handle, function,
#: unique, state, result, attempts, submitted, started, ended). A plain tuple of bytes,
#: str, int and float rather than an object: the garbage collector stops tracking such a
#: tuple after its first pass, and a quarter of a million kept results as objects (with
#: a list each) made every full collection walk them -- measured, a background job's
#: dispatch went from 2.2 to 3.8 us with results kept, 0.8 us of it the collector.
#: Declared variable-length: mypyc keeps a fixed-length tuple unboxed and would box it
#: into a new tuple object wherever it is stored.
Row = tuple[Any, ...]

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
        return (row_size(self.handle, self.function, self.unique, self.result)
                + len(self.data) + len(self.reducer) + sum(len(r) + 40 for r in self.reasons))

    def __repr__(self) -> str:
        return f"<Outcome {self.handle!r} {self.state}{' dead' if self.dead else ''}>"


def row_size(handle: bytes, function: bytes, unique: bytes, result: bytes) -> int:
    return RECORD_OVERHEAD + len(handle) + len(function) + len(unique) + len(result)


def _row_bytes(row: Row) -> int:
    """A row's cost against the budget, recomputed (storing it boxed an int per row)."""
    return RECORD_OVERHEAD + len(row[0]) + len(row[1]) + len(row[2]) + len(row[4])


class OutcomeBook:
    """Kept outcomes (expiring) and dead letters (kept until retried or purged).

    Args:
        keep: seconds an outcome is kept after its job ended; 0 keeps none.
        max_bytes: budget of kept outcomes; beyond it the oldest are dropped early.
        dead_max_bytes: budget of dead letters; beyond it the oldest are dropped.

    Kept results are rows in a list, in the order the jobs ended, so expiry and the
    budget take from the front; the index from handle to row is built only when a
    handle is looked up (``result``, a retry of a dead letter), from where the last
    lookup left off. A job server keeps far more results than anyone reads: keeping one
    costs an append, and a dict insert per job was a quarter of the cost of keeping it.
    (Not the dict's own order either: a dict whose front entries are deleted keeps them
    as dummies that every scan from the front skips again -- O(n) eviction, 4.8 us per
    job with a 1 MB budget.)

    Every method that drops records returns their handles, so the caller can delete
    them from the store too.
    """

    __slots__ = ("_base", "_head", "_index", "_indexed", "_order", "count", "dead",
                 "dead_bytes", "dead_max_bytes", "evicted", "keep", "max_bytes",
                 "results_bytes")

    def __init__(self, keep: float = 3600.0, max_bytes: int = 64 << 20,
                 dead_max_bytes: int = 64 << 20) -> None:
        self.keep = keep
        self.max_bytes = max_bytes
        self.dead_max_bytes = dead_max_bytes
        # Rows from _order[_head] on are live or None (discarded); _base is the absolute
        # position of _order[0], so positions in _index survive cutting the list's front.
        self._order: list[Row | None] = []
        self._head = 0
        self._base = 0
        self._index: dict[bytes, int] = {}  # handle -> absolute position, built lazily
        self._indexed = 0  # absolute position of the first row not in _index yet
        #: kept results (not dead letters)
        self.count = 0
        self.dead: dict[bytes, Outcome] = {}
        self.results_bytes = 0
        self.dead_bytes = 0
        #: Records dropped before their time by a budget (for logs and metrics).
        self.evicted = 0

    # ------------------------------------------------------------------ lookups

    def _sync(self) -> None:
        """Index the rows kept since the last lookup."""
        order = self._order
        base = self._base
        index = self._index
        pos = max(self._indexed, base + self._head)
        end = base + len(order)
        while pos < end:
            row = order[pos - base]
            if row is not None:
                index[row[0]] = pos
            pos += 1
        self._indexed = end

    def _row(self, handle: bytes) -> tuple[int, Row] | None:
        """The live row of ``handle`` and its absolute position."""
        self._sync()
        pos = self._index.get(handle)
        if pos is None:
            return None
        at = pos - self._base
        row = self._order[at] if at >= self._head else None
        if row is None or row[0] != handle:
            del self._index[handle]
            return None
        return pos, row

    def get(self, handle: bytes) -> Outcome | None:
        found = self._row(handle)
        if found is not None:
            row = found[1]
            return Outcome(handle, row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                           row[8])
        return self.dead.get(handle)

    def result_handles(self) -> list[bytes]:
        """Handles of the kept results, oldest first."""
        return [row[0] for row in self._order[self._head:] if row is not None]

    # ------------------------------------------------------------------ changes

    def add_result(self, handle: bytes, function: bytes, unique: bytes, state: str,
                   result: bytes, attempts: int, submitted: float, started: float,
                   ended: float) -> list[bytes] | None:
        """Keep an outcome that is not a dead letter (the caller made sure ``handle`` has
        no record yet: a job's handle is live until it ends). Returns the handles the
        budget pushed out (``handle`` itself when nothing is kept), or None."""
        if self.keep <= 0:
            return [handle]
        self._order.append((handle, function, unique, state, result, attempts, submitted,
                            started, ended))
        self.count += 1
        self.results_bytes += (RECORD_OVERHEAD + len(handle) + len(function) + len(unique)
                               + len(result))
        if self.results_bytes > self.max_bytes:
            return self._take_oldest(0.0)
        return None

    def add(self, outcome: Outcome) -> list[bytes]:
        """Keep ``outcome`` (a dead letter if ``outcome.dead``), replacing any record of
        its handle; returns the handles the budget pushed out (dead letters when it is
        one), possibly its own."""
        self.discard(outcome.handle)
        if not outcome.dead:
            return self.add_result(
                outcome.handle, outcome.function, outcome.unique, outcome.state,
                outcome.result, outcome.attempts, outcome.submitted, outcome.started,
                outcome.ended) or []
        self.dead[outcome.handle] = outcome
        self.dead_bytes += outcome.size
        gone: list[bytes] = []
        dead = self.dead
        while dead and self.dead_bytes > self.dead_max_bytes:
            oldest = next(iter(dead.values()))
            del dead[oldest.handle]
            self.dead_bytes -= oldest.size
            gone.append(oldest.handle)
        self.evicted += len(gone)
        return gone

    def discard(self, handle: bytes) -> bool:
        """Forget the record of ``handle`` (retried, purged, or replaced)."""
        found = self._row(handle)
        if found is not None:
            pos, row = found
            self._order[pos - self._base] = None
            del self._index[handle]
            self.count -= 1
            self.results_bytes -= _row_bytes(row)
            return True
        outcome = self.dead.pop(handle, None)
        if outcome is not None:
            self.dead_bytes -= outcome.size
            return True
        return False

    def expire(self, now: float) -> list[bytes]:
        """Drop the outcomes (not dead letters) that ended ``keep`` seconds before ``now``."""
        return self._take_oldest(now - self.keep)

    def next_expiry(self) -> float | None:
        """When the oldest kept outcome expires, or None."""
        order = self._order
        head = self._head
        while head < len(order):
            row = order[head]
            if row is not None:
                self._head = head
                return float(row[8]) + self.keep
            head += 1
        self._head = head
        return None

    def _take_oldest(self, ended_by: float) -> list[bytes]:
        """Drop the oldest rows: those that ended at or before ``ended_by``, then more
        while the budget is exceeded. Returns their handles."""
        gone: list[bytes] = []
        order = self._order
        index = self._index
        head = self._head
        evictions = 0
        while head < len(order):
            row = order[head]
            if row is not None:
                if row[8] > ended_by:
                    if self.results_bytes <= self.max_bytes:
                        break
                    evictions += 1
                handle: bytes = row[0]
                if index and index.get(handle) == self._base + head:
                    del index[handle]
                order[head] = None
                self.count -= 1
                self.results_bytes -= _row_bytes(row)
                gone.append(handle)
            head += 1
        if head == len(order):
            self._base += head
            self._indexed = max(self._indexed, self._base)
            order.clear()
            head = 0
        elif head >= 1024 and head * 2 >= len(order):
            del order[:head]
            self._base += head
            head = 0
        self._head = head
        self.evicted += evictions
        return gone

    def __len__(self) -> int:
        return self.count + len(self.dead)
