"""The storage contract every durable-queue backend implements.

The server never talks to a database directly: it hands :class:`Batch` objects to a
:class:`Store` through the group committer. Keeping the contract this small (open, boot,
the loads, apply, close) is what lets one conformance suite cover SQLite,
PostgreSQL, MySQL/MariaDB, Redis and memcached alike.

Error tree::

    Exception
     +-- StoreError        any failure to reach or write the store; message is for humans
          +-- FencedError  this server's lease was taken over (see Store.claim)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field


class StoreError(Exception):
    """The store cannot be reached or a write failed.

    The message names the backend and the address (never a password), e.g.
    ``"PostgreSQL at 127.0.0.1:5432 unreachable: connection refused"``, because it ends up
    in ``ERROR QUEUE_ERROR`` packets and in startup failures read by operators.
    """


class FencedError(StoreError):
    """Another server adopted this server's stored jobs: its lease is gone.

    Raised by :meth:`Store.apply` and :meth:`Store.renew` of a store shared by several
    servers once this server's lease epoch is no longer the one in the store (it was
    paused or cut off for longer than its lease, or a second process started with the
    same server id). Nothing of the failed call was written. The server must stop
    serving stored work: it cannot know which of its jobs now belong to someone else.
    """


@dataclass(slots=True)
class LeaseInfo:
    """One server of a shared store, as its lease row says (``gearshift admin``)."""

    server_id: str
    epoch: int              # bumped by every claim and every adoption (the fencing token)
    expires_in: float       # seconds until the lease expires, by the database's clock
    adopted_by: str         # who took its jobs after it expired; "" = nobody (yet)
    jobs: int               # stored jobs it owns now (-1: not counted)


#: Priorities as stored (the same numbers as the broker uses).
PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = 0, 1, 2


@dataclass(slots=True)
class StoredJob:
    """One durable background job, exactly as it will be replayed after a restart."""

    handle: bytes      # job handle and identity in the store (never reused: see Store.boot)
    function: bytes
    unique: bytes      # may be empty; may contain any bytes except NUL
    data: bytes        # arbitrary binary, NULs included
    priority: int      # 0 high, 1 normal, 2 low
    when: int          # unix epoch seconds to run at; 0 = as soon as possible
    reducer: bytes = b""   # SUBMIT_REDUCE_JOB_BACKGROUND reducer (empty otherwise)
    retries: int = 0       # failed attempts so far (survives restarts)
    submitted: float = 0.0  # unix seconds the job was accepted; 0 = unknown (older rows)

    def __post_init__(self) -> None:
        # Bad input gets a clear error here rather than a cryptic driver error later.
        if not self.handle:
            raise ValueError("StoredJob.handle must not be empty")
        if self.priority not in (PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW):
            raise ValueError(f"StoredJob.priority must be 0, 1 or 2, not {self.priority!r}")
        if self.when < 0 or self.retries < 0 or self.submitted < 0:
            raise ValueError("StoredJob.when, retries and submitted must not be negative")


#: A stored job as a page returns it, with its position first: (position, handle,
#: function, unique, data, priority, when, reducer, retries, submitted) -- the fields of
#: :class:`StoredJob` in its order. A plain tuple: a deep queue reads millions of them,
#: and a row straight from the driver costs nothing to build (a validated StoredJob
#: was a tenth of a drain's time).
JobRow = tuple[int, bytes, bytes, bytes, bytes, int, int, bytes, int, float]


def row_job(row: JobRow) -> StoredJob:
    """The :class:`StoredJob` of a :data:`JobRow` (its position left out)."""
    return StoredJob(*row[1:])


#: The states an outcome can end in (``StoredOutcome.state``).
OUTCOME_STATES = ("complete", "failed", "exception", "cancelled", "dead")


@dataclass(slots=True)
class StoredOutcome:
    """How a background job ended, kept after it left the queue.

    Outcomes are kept for ``--keep-results``; a record with ``dead`` set is a dead
    letter, kept until it is retried or purged, and carries what is needed to run the
    job again (``data``, ``priority``, ``reducer``) and every failed attempt's reason.
    """

    handle: bytes
    function: bytes
    unique: bytes
    state: str              # one of OUTCOME_STATES
    result: bytes           # the result data (complete), or the last failure's reason
    attempts: int           # times the job was handed to a worker
    submitted: float        # unix seconds; 0 = unknown
    started: float          # when its last attempt started; 0 = never ran
    ended: float
    dead: bool = False      # in the dead-letter set
    data: bytes = b""       # the job's payload (dead letters only)
    priority: int = PRIORITY_NORMAL
    reducer: bytes = b""
    reasons: list[bytes] = field(default_factory=list)  # each failed attempt's reason

    def __post_init__(self) -> None:
        if not self.handle:
            raise ValueError("StoredOutcome.handle must not be empty")
        if self.state not in OUTCOME_STATES:
            raise ValueError(f"StoredOutcome.state must be one of {OUTCOME_STATES}, "
                             f"not {self.state!r}")
        if self.priority not in (PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW):
            raise ValueError(f"StoredOutcome.priority must be 0, 1 or 2, not {self.priority!r}")
        if self.attempts < 0:
            raise ValueError("StoredOutcome.attempts must not be negative")


@dataclass(slots=True)
class StoredSchedule:
    """A recurring background job (SUBMIT_JOB_SCHED, ``gearshift schedule add``)."""

    key: bytes              # the schedule's id
    function: bytes
    unique: bytes
    cron: str               # five cron fields, "minute hour day-of-month month day-of-week"
    data: bytes
    priority: int = PRIORITY_NORMAL
    last_fired: float = 0.0  # the slot (unix seconds) fired last; 0 = never

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("StoredSchedule.key must not be empty")
        if self.priority not in (PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW):
            raise ValueError(f"StoredSchedule.priority must be 0, 1 or 2, not {self.priority!r}")


@dataclass(slots=True)
class Batch:
    """Everything one group commit writes, in ONE transaction."""

    adds: list[StoredJob] = field(default_factory=list)
    removes: list[bytes] = field(default_factory=list)        # handles
    retries: dict[bytes, int] = field(default_factory=dict)   # handle -> new retry count
    when: dict[bytes, int] = field(default_factory=dict)      # handle -> new run-at time
    #: handle -> outcome to store (replacing any), or None to delete it; last one wins
    outcomes: dict[bytes, StoredOutcome | None] = field(default_factory=dict)
    #: schedule key -> schedule to store (replacing any), or None to delete it
    schedules: dict[bytes, StoredSchedule | None] = field(default_factory=dict)
    #: function name -> its admin flow setting text (``pause``, ``limit``), or None to
    #: delete it; last one wins
    flows: dict[bytes, str | None] = field(default_factory=dict)

    def normalized(self) -> Batch:
        """The same effect with no job both added and removed.

        A handle removed in the batch that also adds it cancels out (the job was done
        before it was ever written), and a retry count for a job added in this batch is
        folded into the added row. Backends write the normalized form, so none of them
        has to reason about the ordering of an add and a remove inside one transaction.
        """
        removed = set(self.removes)
        adds: list[StoredJob] = []
        for job in self.adds:
            if job.handle in removed:
                continue
            if job.handle in self.retries or job.handle in self.when:
                job = StoredJob(job.handle, job.function, job.unique, job.data, job.priority,
                                self.when.get(job.handle, job.when), job.reducer,
                                self.retries.get(job.handle, job.retries), job.submitted)
            adds.append(job)
        added = {job.handle for job in self.adds}
        removes = [h for h in dict.fromkeys(self.removes) if h not in added]
        retries = {h: n for h, n in self.retries.items() if h not in added and h not in removed}
        when = {h: w for h, w in self.when.items() if h not in added and h not in removed}
        return Batch(adds, removes, retries, when, dict(self.outcomes), dict(self.schedules),
                     dict(self.flows))

    def __bool__(self) -> bool:
        return bool(self.adds or self.removes or self.retries or self.when or self.outcomes
                    or self.schedules or self.flows)


class Store(abc.ABC):
    """A durable queue of background jobs.

    Resource handling: :meth:`open` connects (and creates the schema); :meth:`close`
    releases every connection and thread. After a failed :meth:`apply` the store must
    reconnect on a later call; the caller (the group committer) does the backoff.

    Error handling: every method raises :class:`StoreError`, never a driver exception.
    """

    #: Human-readable backend and address, used in error messages (no password).
    description: str = "store"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if needed.

        Raises:
            StoreError: unreachable service or unusable file, with a clear message.
        """

    @abc.abstractmethod
    async def boot(self) -> int:
        """Atomically increment and return the persistent boot counter.

        Job handles embed it, so a handle is never reused across restarts.
        """

    @abc.abstractmethod
    async def load(self) -> list[StoredJob]:
        """Every stored job, in insertion order (FIFO within a priority on replay)."""

    @abc.abstractmethod
    async def load_outcomes(self) -> list[StoredOutcome]:
        """Every stored outcome and dead letter, oldest ``ended`` first."""

    @abc.abstractmethod
    async def load_schedules(self) -> list[StoredSchedule]:
        """Every stored schedule, in the order they were first stored."""

    @abc.abstractmethod
    async def load_flows(self) -> dict[bytes, str]:
        """Every stored admin flow setting: function name -> its text, in the order they
        were first stored."""

    @abc.abstractmethod
    async def apply(self, batch: Batch) -> None:
        """Write ``batch`` in one transaction, all or nothing.

        Raises:
            StoreError: the write failed; nothing of the batch is stored.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads; safe to call twice."""

    # ------------------------------------------------- deep queues (paging)

    #: Whether this store can page: :meth:`load_chunk`, :meth:`load_page` and
    #: :meth:`load_jobs` work, so a server with ``--queue-memory`` may keep only the
    #: head of each queue in memory and read the rest back as workers need it.
    pageable: bool = False

    async def load_chunk(self, after: int, limit: int) -> list[JobRow]:
        """Up to ``limit`` stored jobs (every function) whose position is above
        ``after``, in insertion order, as :data:`JobRow` tuples (position first): the
        replay of :meth:`load` in pieces, so a deep queue never has to be read whole.

        A position is the store's insertion counter: an integer above 0 that grows
        with every stored job and is never reused while the job is stored.
        """
        raise StoreError(f"{self.description} cannot page its queue")

    async def load_page(self, function: bytes, priority: int, after: int, limit: int,
                        start: bytes = b"") -> list[JobRow]:
        """Up to ``limit`` stored jobs of ``function`` at ``priority`` whose position is
        above ``after`` -- and, when ``start`` names a stored job, not before that job
        -- in insertion order, as :data:`JobRow` tuples. ``start`` lets a caller that
        never learnt a position begin at a job it knows by handle; a ``start`` that is
        not stored is ignored."""
        raise StoreError(f"{self.description} cannot page its queue")

    async def load_jobs(self, handles: list[bytes]) -> list[StoredJob]:
        """The stored jobs among ``handles`` (any order; missing ones are left out)."""
        raise StoreError(f"{self.description} cannot page its queue")

    # ------------------------------------------------- several servers, one store

    #: Whether several servers may share this store (leases, adoption, fencing).
    #: False: the store is for one server at a time, which :meth:`claim` may enforce.
    shared: bool = False

    async def claim(self, server_id: str, lease: float) -> bool:
        """Become the server ``server_id`` of this store, before :meth:`load`.

        A shared store registers (or takes back) the server's lease for ``lease``
        seconds, bumping its epoch so an older process with the same id is fenced, and
        from then on :meth:`load` returns only the jobs this server owns and every
        :meth:`apply` writes only while the lease epoch is still this one (else
        :class:`FencedError`). A store for one server may refuse a second one here
        (:class:`StoreError`). Returns whether a lease for ``server_id`` was still live
        (a restart right after a crash, or a second process with the same id). The
        default does nothing.
        """
        return False

    async def renew(self) -> tuple[list[str], list[StoredJob]]:
        """Renew this server's lease and adopt the jobs of servers whose lease expired.

        Called every ``lease / 3`` seconds after :meth:`claim`. Returns the servers
        adopted and their jobs (queued and running ones alike, insertion order), which
        now belong to this server. Raises :class:`FencedError` when this server's lease
        was taken over.
        """
        return [], []

    async def release(self) -> None:
        """Give up the lease at a clean shutdown, so another server adopts the jobs
        left at once instead of after the lease runs out. The default does nothing."""
        return None

    async def leases(self) -> list[LeaseInfo]:
        """Every server's lease in a shared store (none otherwise), with job counts."""
        return []

    def cluster_view(self) -> list[LeaseInfo]:
        """Every server's lease as the last :meth:`renew` saw it, without I/O (``jobs``
        is -1: not counted). What ``gearshift admin --cluster`` shows."""
        return []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"
