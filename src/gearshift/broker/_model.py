"""The broker's records: connections (peers), functions and jobs.

Plain ``__slots__`` classes rather than dataclasses: a job is created and a peer touched
on every submission, and attribute access on slotted classes is the cheapest Python has.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Final

from mypy_extensions import u8

from gearshift.broker._acl import Rights
from gearshift.broker._listing import Listing
from gearshift.broker._numbers import decimal
from gearshift.broker._retry import RetryPolicy
from gearshift.broker._timing import Histogram

# Priorities index the per-function queue lists; lower is more urgent.
HIGH: Final = 0
NORMAL: Final = 1
LOW: Final = 2
PRIORITY_NAMES: Final = ("high", "normal", "low")

# Job states.
PENDING: Final = 0  # background job whose store write is in flight (not runnable yet)
SCHEDULED: Final = 1  # SUBMIT_JOB_EPOCH in the future: waiting in the timer heap
QUEUED: Final = 2  # in its function's priority queue
RUNNING: Final = 3  # assigned to a worker
DONE: Final = 4  # finished, failed, cancelled or abandoned: no longer in any index


class Ack:
    """A reply (JOB_CREATED or ERROR) owed to ``peer`` once a job's store write ends.

    It holds the peer's place in its reply stream: whatever the peer is sent meanwhile
    waits behind it (:attr:`Peer.gates`), so a client that pipelines requests still gets
    the replies in request order, as libgearman assumes when it matches JOB_CREATED
    packets to its tasks.
    """

    __slots__ = ("foreground", "peer", "reply", "reply_ok")

    def __init__(self, peer: Peer, foreground: bool = False) -> None:
        self.peer = peer
        self.reply: bytes | None = None
        #: what a held non-job write (a schedule) answers once it is stored
        self.reply_ok = b""
        # A foreground submission only waits to keep its replies in order; its fate does
        # not hang on the store write (see Broker.persist_failed).
        self.foreground = foreground


class Peer:
    """One connection, acting as client, worker, admin -- or all three, as in gearmand.

    Attributes:
        out: byte strings queued for this peer, in order; the I/O shell joins, writes
            and clears them (:meth:`take_output`). A list rather than a bytearray:
            ``clear()`` shrinks a bytearray's buffer to one byte, so every flushed peer
            paid a realloc per packet appended in the next loop iteration, and a
            payload appended by reference is copied once, by the join.
        functions: registered functions -> round-robin sequence number, stamped at
            registration and when ``Broker._pick`` had to choose among the worker's own
            functions (the one served longest ago there has the smallest number).
            only: the one registered function, when there is exactly one (the usual
            worker), else None: kept by :meth:`functions_changed`, so that a grab needs
            no iteration over ``functions`` (two dict-iterator steps a grab).
        timeouts: CAN_DO_TIMEOUT per function, in seconds.
        sleeping / noop_sent: PRE_SLEEP state; a peer gets at most one NOOP per sleep.
        sleep_epoch: bumped on every PRE_SLEEP so stale wake-list entries are detectable.
        held: jobs assigned to this peer as a worker.
        assigned: the job assigned last, which a work result most likely names; held
            while ``job.worker is peer``. assigned_handle: its handle, as sent in the
            JOB_ASSIGN (a background job's handle is not kept: it would be built again
            to compare it with each work result's).
        attached: foreground jobs this peer, as a client, waits on.
        gates: while a JOB_CREATED owed to this peer waits for the store, the replies
            behind it, in order (:class:`Ack` slots and byte strings); None otherwise.
        gate_mark: entries of ``out`` written before the first open gate (the rest of
            ``out`` belongs behind the gates and is moved there before a flush).
        gearshift: the peer is a gearshift library (it sent ``OPTION_REQ gearshift``),
            so it may be told things third-party peers must never see.
        urgent: ``out`` holds a JOB_ASSIGN or a NOOP, which a worker waits on before it
            can do anything; the I/O shell writes such a peer before the others (and a
            worker's JOB_ASSIGN at once), see ``server._wire``. Cleared by
            :meth:`take_output`.
    """

    __slots__ = (
        "assigned",
        "assigned_handle",
        "attached",
        "backlog",
        "cancelled",
        "client_id",
        "closed",
        "exceptions",
        "fd",
        "functions",
        "gate_mark",
        "gates",
        "gearshift",
        "held",
        "host",
        "id",
        "listing",
        "noop_sent",
        "only",
        "out",
        "port",
        "rights",
        "sleep_epoch",
        "sleeping",
        "timeouts",
        "urgent",
    )

    def __init__(self, peer_id: int, host: str = "", port: int = 0, fd: int = -1,
                 exceptions: bool = False) -> None:
        self.id = peer_id
        self.out: list[bytes] = []
        self.host = host
        self.port = port
        self.fd = fd
        self.client_id = b"-"
        self.exceptions = exceptions
        self.functions: dict[Function, int] = {}
        self.only: Function | None = None
        self.timeouts: dict[Function, float] = {}
        self.sleeping = False
        self.noop_sent = False
        self.sleep_epoch = 0
        self.held: set[Job] = set()
        self.attached: set[Job] = set()
        self.assigned: Job | None = None  # the job last assigned (it may be done since)
        self.assigned_handle = b""
        self.closed = False
        self.gates: deque[Ack | bytes] | None = None
        self.gate_mark = 0
        self.urgent = False
        self.gearshift = False  # sent OPTION_REQ "gearshift": may be sent extensions
        # Handles of jobs cancelled while this worker ran them: its late WORK_* for them
        # are dropped without an ERROR (None until a running job is cancelled).
        self.cancelled: set[bytes] | None = None
        #: what --acl lets this peer do (None: no ACL, everything)
        self.rights: Rights | None = None
        #: packets of a read not yet acted on, because admin replies backed up
        #: (``Broker._admin_lines``); None: nothing waits
        self.backlog: list[tuple[int, list[bytes]]] | None = None
        #: a long admin reply still being produced (``backlog`` is not None meanwhile:
        #: what the peer sends waits behind it); None: none
        self.listing: Listing | None = None

    def functions_changed(self) -> None:
        """Call after adding to or removing from ``functions``."""
        only: Function | None = None
        if len(self.functions) == 1:
            for func in self.functions:
                only = func
        self.only = only

    def take_output(self) -> bytes:
        """Everything queued for this peer as one byte string; ``out`` is left empty."""
        out = self.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.urgent = False
        return data

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.host}:{self.port} functions={len(self.functions)}>"


class JobQueue:
    """A FIFO of jobs: a list and the index of its head.

    Not a ``deque``: mypyc has no deque primitives, so every ``append`` and ``popleft``
    was a method call by name (a type lookup each); these methods compile to direct
    calls. A taken slot is cleared at once (the job may be freed) and the list is cut
    when the queue empties, or when the taken prefix is most of it.
    """

    __slots__ = ("head", "items")

    def __init__(self) -> None:
        self.items: list[Job | None] = []
        self.head = 0

    def append(self, job: Job) -> None:
        self.items.append(job)

    def popleft(self) -> Job:
        """The oldest entry. Raises IndexError when empty."""
        items = self.items
        head = self.head
        job = items[head]
        assert job is not None  # only slots before head are cleared
        items[head] = None
        head += 1
        if head == len(items):
            items.clear()
            head = 0
        elif head >= 1024 and head * 2 >= len(items):
            del items[:head]
            head = 0
        self.head = head
        return job

    def clear(self) -> None:
        self.items.clear()
        self.head = 0

    def __len__(self) -> int:
        return len(self.items) - self.head

    def __iter__(self) -> Iterator[Job]:
        """The entries from oldest to newest (a snapshot)."""
        return iter([job for job in self.items[self.head:] if job is not None])


class FlowControl:
    """A function's flow-control state (``--concurrency``, ``--rate``, ``pause``).

    Only functions with a limit have one (``Function.flow``), so the dispatcher's test
    for "is this function limited" is one attribute read. The rate is a token bucket:
    ``burst`` tokens at most, ``per_second`` added per second, one taken per job start.
    """

    __slots__ = ("burst", "concurrency", "paused", "per_second", "stamp", "tokens", "turn",
                 "weight")

    def __init__(self, concurrency: int = -1, paused: bool = False, count: int = 0,
                 period: float = 1.0, weight: int = 1, now: float = 0.0) -> None:
        self.concurrency = concurrency  # most jobs running at once; -1 = no limit
        self.paused = paused
        self.per_second = count / period if count else 0.0  # 0.0 = no rate limit
        self.burst = float(count)
        self.tokens = float(count)  # a new bucket is full
        self.stamp = now
        self.weight = weight  # jobs in a row before the next function's turn
        self.turn = 0  # jobs served in the current turn (weights above 1)

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last refill (at most ``burst``)."""
        if self.per_second > 0.0 and now > self.stamp:
            tokens = self.tokens + (now - self.stamp) * self.per_second
            self.tokens = tokens if tokens < self.burst else self.burst
            self.stamp = now

    def slots(self, running: int) -> int:
        """How many more jobs may start now (after :meth:`refill`); large = no limit."""
        if self.paused:
            return 0
        free = 1 << 30
        if self.concurrency >= 0:
            free = self.concurrency - running
        if self.per_second > 0.0:
            # (a hair of slack: float sums of 1/rate steps land just under whole numbers)
            tokens = int(self.tokens + 1e-9)
            if tokens < free:
                free = tokens
        return free if free > 0 else 0

    def token_due(self, now: float) -> float:
        """When the bucket next holds a whole token (``now`` if it does)."""
        missing = 1.0 - self.tokens
        if self.per_second <= 0.0 or missing <= 1e-9:
            return now
        return now + missing / self.per_second


class Pages:
    """A function's deep queue (``--queue-memory``), per priority: how many of its jobs
    are only in the store (spilled), the store position after which the next page
    starts (or the handle of the first spilled job, until a position is known), and
    whether a page is being read. Created when the function first spills."""

    __slots__ = ("after", "loading", "spilled", "start")

    def __init__(self) -> None:
        self.spilled = [0, 0, 0]
        self.after = [0, 0, 0]
        self.start = [b"", b"", b""]
        self.loading = [False, False, False]


class Function:
    """A function name with its three FIFO queues and the workers able to run it.

    ``queues`` may hold entries that are no longer queued (cancelled, abandoned by their
    clients); they are skipped when reached. ``queued`` counts only live entries, so the
    admin counts and the "is anything runnable" checks never see the dead ones.

    ``submitted`` / ``completed`` / ``failed`` / ``retried`` / ``dead`` count jobs since
    the server started, for ``/metrics`` (gearshift/http/_metrics.py): one attribute
    increment where a job starts or ends, read only when scraped.
    """

    __slots__ = (
        "blocked",
        "completed",
        "dead",
        "deep",
        "failed",
        "flow",
        "handle_prefix",
        "max_queue",
        "name",
        "pages",
        "payloads",
        "queued",
        "queues",
        "retried",
        "retry",
        "run_times",
        "running",
        "scheduled",
        "sleepers",
        "submitted",
        "uniques",
        "wait_times",
        "wake_check",
        "workers",
    )

    def __init__(self, name: bytes, handle_prefix: bytes = b"H:gearshift:") -> None:
        self.name = name
        #: the broker's handle prefix, which with a job's ``seq`` makes its handle
        self.handle_prefix = handle_prefix
        # Declared variable-length: mypyc keeps a fixed-length tuple unboxed and builds a
        # new tuple object for every access by a variable index (a job's priority).
        self.queues: tuple[JobQueue, ...] = (JobQueue(), JobQueue(), JobQueue())
        self.queued = [0, 0, 0]
        self.running = 0
        self.scheduled = 0  # future SUBMIT_JOB_EPOCH jobs waiting in the timer heap
        self.workers: dict[Peer, None] = {}
        self.sleepers: deque[tuple[Peer, int]] = deque()
        self.wake_check = False  # a wake-up check is in the timer heap (_arm_wake_check)
        self.max_queue = [0, 0, 0]  # per priority; 0 = unlimited
        #: the background-job retry policy matched to this name when it was first seen
        self.retry: RetryPolicy | None = None
        # Coalescing indexes (the key is (function, unique), so they live here): unique ->
        # job, and payload -> job for the unique "-". Keyed by the job's own bytes objects,
        # not by (function, unique) tuples: a million queued unique jobs saved 64 MB.
        self.uniques: dict[bytes, Job] = {}
        self.payloads: dict[bytes, Job] = {}
        self.submitted = 0  # new jobs (a coalesced submission is not one)
        self.completed = 0  # WORK_COMPLETE
        self.failed = 0  # ended failed: WORK_FAIL/WORK_EXCEPTION, or dropped by -j
        self.retried = 0  # failed attempts run again (retry policy, lost worker)
        self.dead = 0  # background jobs that became dead letters
        #: with ``BrokerConfig.timing``: how long jobs waited from submission to their
        #: (latest) start, and how long they ran until WORK_COMPLETE/FAIL/EXCEPTION
        self.wait_times: Histogram | None = None
        self.run_times: Histogram | None = None
        #: flow-control state; None (the usual case) = no limit, nothing to check
        self.flow: FlowControl | None = None
        #: a limit holds its queued jobs back: it is in no ``ready`` list meanwhile, so
        #: the dispatch scans never see it (see BrokerState._reflow); so does a deep
        #: queue whose head ran out while its next page is read (``starved``)
        self.blocked = False
        #: queued jobs only in the store (deep queues); 0, the usual case, is all the
        #: dispatch path tests; ``pages`` says which priorities and where they resume
        self.deep = 0
        self.pages: Pages | None = None

    def coalescing_index(self, unique: bytes, data: bytes) -> tuple[dict[bytes, Job], bytes]:
        """Where a job with this non-empty unique is indexed for coalescing, and its key:
        the payload for the unique ``-`` (gearmand's rule), else the unique itself."""
        if unique == b"-":
            return self.payloads, data
        return self.uniques, unique

    @property
    def total(self) -> int:
        """Queued (including scheduled and spilled) plus running, as gearmand's
        ``status`` counts."""
        q = self.queued
        return q[0] + q[1] + q[2] + self.scheduled + self.running + self.deep

    def depth(self, priority: int) -> int:
        """Queued jobs of one priority, in memory and spilled."""
        pages = self.pages
        return self.queued[priority] + (pages.spilled[priority] if pages is not None else 0)

    def starved(self) -> bool:
        """A priority has spilled jobs but none in memory: until its page is read, the
        function must hand out nothing (a lower priority's job would jump the queue)."""
        pages = self.pages
        if pages is None:
            return False
        q, s = self.queued, pages.spilled
        return bool((s[0] and not q[0]) or (s[1] and not q[1]) or (s[2] and not q[2]))

    def __repr__(self) -> str:
        return f"<Function {self.name!r} queued={self.queued} running={self.running}>"


class JobExtras:
    """The parts of a job most queued jobs never use, kept apart so they cost nothing.

    A queued background job is the common case at scale (a million of them is the
    benchmark), and it needs none of these: they are created on first use -- by a
    foreground submission (``clients``), a durable store write (``waiting``), an epoch
    time or reducer, a WORK_STATUS, a retry, a timeout -- and the slimmer :class:`Job`
    saved 80 bytes per queued job.
    """

    __slots__ = ("attempt", "clients", "created", "denominator", "handle", "numerator",
                 "reasons", "reducer", "retries", "waiting", "when")

    def __init__(self) -> None:
        self.clients: list[Peer] | None = None  # foreground submitters attached to it
        self.waiting: list[Ack] | None = None  # submitters not yet sent JOB_CREATED
        self.reducer = b""
        self.when = 0.0  # run at (unix seconds): SUBMIT_JOB_EPOCH, or a retry's backoff
        self.attempt = 0  # bumped on each assignment; invalidates stale timeout timers
        self.retries = 0  # failed attempts (lost workers, and failures under a policy)
        self.reasons: list[bytes] | None = None  # each failed attempt's reason
        self.numerator = 0
        self.denominator = 0
        # The handle, kept when the extras exist anyway: a foreground job's (its packets
        # need it three times) and a replayed job's (minted by an earlier boot, seq -1).
        self.handle = b""
        # A foreground job's JOB_CREATED packet: every submission coalesced onto it is
        # answered with the same bytes object, built once.
        self.created = b""

    def unused(self) -> bool:
        """Nothing is kept here: the job may drop its extras (a stored background job,
        once its JOB_CREATED went out: ~110 bytes of each queued durable job)."""
        return (self.clients is None and self.waiting is None and not self.reducer
                and not self.when and not self.attempt and not self.retries
                and self.reasons is None and not self.numerator and not self.denominator
                and not self.handle and not self.created)


class Job:
    """One job from submission until it completes, fails or is dropped.

    Its handle is the function's handle prefix and ``seq``, built when a packet needs
    it, and :class:`~gearshift.broker._jobs.JobTable` finds a job by parsing the number
    back (a handle object and a dict entry were 90 bytes a job). Jobs that have extras
    anyway keep the built handle there: foreground jobs, and jobs replayed from a store
    (their handle is from an earlier boot; ``seq`` is -1).
    The small fields are ``u8``: mypyc packs them into one word.
    """

    __slots__ = ("background", "data", "function", "more", "priority", "seq", "started",
                 "state", "stored", "submitted", "unique", "worker")

    def __init__(self, function: Function, unique: bytes, data: bytes, priority: int,
                 background: bool) -> None:
        self.function = function
        self.unique = unique
        self.data = data
        self.seq = -1  # set by JobTable.add
        self.worker: Peer | None = None
        self.more: JobExtras | None = None
        self.priority: u8 = priority
        self.state: u8 = QUEUED
        self.background = background
        self.stored = False
        # Unix times, kept for background jobs only (their outcome reports them).
        self.submitted = 0.0
        self.started = 0.0

    def extras(self) -> JobExtras:
        """The job's :class:`JobExtras`, created on first use."""
        more = self.more
        if more is None:
            more = self.more = JobExtras()
        return more

    @property
    def handle(self) -> bytes:
        more = self.more
        if more is not None and more.handle:
            return more.handle
        high, middle, low = decimal(self.seq)
        return b"%s%s%s%s" % (self.function.handle_prefix, high, middle, low)

    @property
    def clients(self) -> list[Peer] | None:
        return self.more.clients if self.more is not None else None

    @clients.setter
    def clients(self, clients: list[Peer] | None) -> None:
        self.extras().clients = clients

    @property
    def waiting(self) -> list[Ack] | None:
        return self.more.waiting if self.more is not None else None

    @waiting.setter
    def waiting(self, waiting: list[Ack] | None) -> None:
        self.extras().waiting = waiting

    @property
    def reducer(self) -> bytes:
        return self.more.reducer if self.more is not None else b""

    @property
    def when(self) -> float:
        return self.more.when if self.more is not None else 0.0

    @property
    def attempt(self) -> int:
        return self.more.attempt if self.more is not None else 0

    @property
    def retries(self) -> int:
        return self.more.retries if self.more is not None else 0

    @property
    def numerator(self) -> int:
        return self.more.numerator if self.more is not None else 0

    @property
    def denominator(self) -> int:
        return self.more.denominator if self.more is not None else 0

    def __repr__(self) -> str:
        return f"<Job {self.handle!r} {self.function.name!r} state={self.state}>"
