"""Value objects shared by both flavours: priorities, status replies, job events, tasks,
and the outcomes, dead letters and schedules gearshift's admin commands report.

A :class:`Task` is the client's record of one submission. It changes state only through
the packet router (:mod:`._protocol`), never through I/O, so the asyncio and blocking
clients share it unchanged.
"""

from __future__ import annotations

import base64
import enum
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gearshift.client._errors import GearmanError, JobException, JobFailed
from gearshift.client._servers import Address
from gearshift.protocol import PacketType

P = PacketType


class Priority(enum.Enum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


#: (priority, background) -> submit packet type.
SUBMIT_TYPE: dict[tuple[Priority, bool], PacketType] = {
    (Priority.HIGH, False): P.SUBMIT_JOB_HIGH,
    (Priority.NORMAL, False): P.SUBMIT_JOB,
    (Priority.LOW, False): P.SUBMIT_JOB_LOW,
    (Priority.HIGH, True): P.SUBMIT_JOB_HIGH_BG,
    (Priority.NORMAL, True): P.SUBMIT_JOB_BG,
    (Priority.LOW, True): P.SUBMIT_JOB_LOW_BG,
}


@dataclass(frozen=True, slots=True)
class JobStatus:
    """STATUS_RES: what the server knows about a handle (unknown handles: all zero)."""

    handle: bytes
    known: bool
    running: bool
    numerator: int
    denominator: int

    @property
    def fraction(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None


@dataclass(frozen=True, slots=True)
class UniqueStatus:
    """STATUS_RES_UNIQUE: status looked up by unique key (``clients``: waiting clients)."""

    unique: bytes
    known: bool
    running: bool
    numerator: int
    denominator: int
    clients: int


class EventKind(enum.Enum):
    DATA = "data"
    WARNING = "warning"
    STATUS = "status"
    COMPLETE = "complete"
    FAIL = "fail"
    EXCEPTION = "exception"


TERMINAL = frozenset({EventKind.COMPLETE, EventKind.FAIL, EventKind.EXCEPTION})


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One WORK_* packet for a job: streamed data, a warning, progress, or the outcome."""

    kind: EventKind
    data: bytes = b""
    numerator: int = 0
    denominator: int = 0


class TaskState(enum.Enum):
    NEW = "new"            # not sent yet (or to be re-sent after a failover)
    SENT = "sent"          # waiting for JOB_CREATED
    CREATED = "created"    # has a handle; foreground: waiting for the outcome
    DONE = "done"          # completed, failed, or could not be submitted


EventCallback = Callable[["Task", JobEvent], None]
DoneCallback = Callable[["Task"], None]


class Task:
    """One job submission and everything that happened to it.

    Attributes:
        handle: the job handle once JOB_CREATED arrived.
        result: WORK_COMPLETE data (foreground) or the handle (background) once done.
        error: why the task failed (:class:`JobFailed`, :class:`ServerError`, ...).
        events: DATA/WARNING/STATUS events not yet consumed by a stream iterator.
        numerator, denominator: the last WORK_STATUS.
        server: the server it was last sent to (the one that gave the handle).
    """

    def __init__(self, function: bytes, data: bytes, unique: bytes, *,
                 priority: Priority = Priority.NORMAL, background: bool = False,
                 when: int | None = None, reducer: bytes | None = None,
                 on_event: EventCallback | None = None,
                 on_done: DoneCallback | None = None) -> None:
        if when is not None and (not background or priority is not Priority.NORMAL):
            raise ValueError("a run-at time (SUBMIT_JOB_EPOCH) is only for normal-priority "
                             "background jobs")
        if reducer is not None and priority is not Priority.NORMAL:
            raise ValueError("reduce jobs always run at normal priority")
        self.function = function
        self.data = data
        self.unique = unique
        self.priority = priority
        self.background = background
        self.when = when
        self.reducer = reducer
        self.on_event = on_event
        self.on_done = on_done
        #: route by hashing ``unique`` (False when the client generated the key itself)
        self.route_by_unique = bool(unique)
        self.state = TaskState.NEW
        self.handle: bytes | None = None
        self.server: Address | None = None
        self.result: bytes | None = None
        self.error: GearmanError | None = None
        self.events: deque[JobEvent] = deque()
        self.numerator = 0
        self.denominator = 0

    def __repr__(self) -> str:
        return (f"<Task {self.function.decode(errors='replace')} {self.state.value}"
                f" handle={self.handle!r}>")

    @property
    def done(self) -> bool:
        return self.state is TaskState.DONE

    @property
    def packet(self) -> tuple[PacketType, tuple[bytes, ...]]:
        """The submit packet type and fields for this task."""
        if self.reducer is not None:
            kind = P.SUBMIT_REDUCE_JOB_BACKGROUND if self.background else P.SUBMIT_REDUCE_JOB
            return kind, (self.function, self.unique, self.reducer, b"", self.data)
        if self.when is not None:
            return P.SUBMIT_JOB_EPOCH, (self.function, self.unique, b"%d" % self.when, self.data)
        return SUBMIT_TYPE[self.priority, self.background], (self.function, self.unique,
                                                             self.data)

    def outcome(self) -> bytes:
        """The result, or raise the task's error. Only meaningful once ``done``."""
        if self.error is not None:
            raise self.error
        assert self.result is not None, "task not finished"
        return self.result

    # ------------------------------------------------------------ router hooks

    def created(self, handle: bytes) -> None:
        self.handle = handle
        if self.background:
            self.finish(result=handle)
        else:
            self.state = TaskState.CREATED

    def apply(self, event: JobEvent) -> None:
        """Record one WORK_* event; terminal events finish the task."""
        if self.done:
            return
        if event.kind is EventKind.STATUS:
            self.numerator, self.denominator = event.numerator, event.denominator
        if event.kind not in TERMINAL:
            self.events.append(event)
        if self.on_event is not None:
            self.on_event(self, event)
        handle = self.handle or b""
        if event.kind is EventKind.COMPLETE:
            self.finish(result=event.data)
        elif event.kind is EventKind.EXCEPTION:
            self.finish(error=JobException(handle, event.data))
        elif event.kind is EventKind.FAIL:
            self.finish(error=JobFailed(handle))

    def finish(self, result: bytes | None = None, error: GearmanError | None = None) -> None:
        if self.done:
            return
        self.state = TaskState.DONE
        self.result = result
        self.error = error
        if self.on_done is not None:
            self.on_done(self)


# ---------------------------------------------------------------- outcomes, schedules

#: States of a job that ended; ``queued``, ``running``, ``scheduled`` (waiting for a
#: run-at time or a retry's backoff) and ``pending`` (not yet stored) mean it still lives.
FINAL_STATES = frozenset({"complete", "failed", "exception", "cancelled", "dead"})
#: Priorities as the server numbers them in JSON (0 runs first).
PRIORITY_NUMBERS = {0: Priority.HIGH, 1: Priority.NORMAL, 2: Priority.LOW}


def _b64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


def _priority(value: int | str) -> Priority:
    """The server's number, or a name (what ``to_json`` writes)."""
    return Priority(value) if isinstance(value, str) else PRIORITY_NUMBERS[value]


def _b64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a server knows about one background job: its state while it lives, its
    result or failure once it ended (admin ``result``; dead letters from ``dead``).

    A background job's client is gone before the job runs, so this record, kept by the
    server for ``--keep-results``, is the only way to learn how it went.

    Attributes:
        state: ``queued``/``running``/``scheduled``/``pending`` while alive;
            ``complete``/``failed``/``exception``/``cancelled``/``dead`` once ended
            (``dead``: a retry policy ran out).
        dead: a dead letter (failed for good; ``retry_dead`` runs it again).
        attempts: runs so far (failed ones, plus the current one while running).
        submitted, started, ended: UNIX times, None when not (yet) known.
        data: the result (``complete`` only; else empty).
        reason: why it failed (ended jobs other than ``complete``), else None.
        reasons: every failed attempt's reason, oldest first (dead letters, and live
            jobs waiting for a retry).
        payload, priority: what the job was submitted with (dead letters only).
        next_run: when a ``scheduled`` job runs (UNIX time), else None.
    """

    handle: str
    function: str
    unique: str
    state: str
    dead: bool = False
    attempts: int = 0
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    data: bytes = b""
    reason: str | None = None
    reasons: tuple[str, ...] = ()
    payload: bytes | None = None
    priority: Priority | None = None
    next_run: float | None = None

    @property
    def done(self) -> bool:
        """The job ended (whichever way); its state will not change again by itself."""
        return self.state in FINAL_STATES

    @property
    def ok(self) -> bool:
        """It completed: ``data`` is the result."""
        return self.state == "complete"

    @property
    def failed(self) -> bool:
        """It ended without a result (failed, raised, cancelled or dead)."""
        return self.done and not self.ok

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> JobOutcome:
        """From the server's JSON object, or :meth:`to_json`'s (raises KeyError,
        ValueError or TypeError if it is neither)."""
        priority = record.get("priority")
        return cls(
            handle=str(record["handle"]), function=str(record["function"]),
            unique=str(record.get("unique", "")), state=str(record["state"]),
            dead=bool(record.get("dead", False)), attempts=int(record.get("attempts", 0)),
            submitted=record.get("submitted"), started=record.get("started"),
            ended=record.get("ended"), data=_b64(record.get("data_b64")) or b"",
            reason=record.get("reason"), reasons=tuple(record.get("reasons", ())),
            payload=_b64(record.get("payload_b64")),
            priority=None if priority is None else _priority(priority),
            next_run=record.get("next_run"))

    def to_json(self) -> dict[str, Any]:
        """The server's JSON form (bytes as base64 in ``*_b64`` keys), priority by name."""
        record: dict[str, Any] = {
            "handle": self.handle, "function": self.function, "unique": self.unique,
            "state": self.state, "dead": self.dead, "attempts": self.attempts,
            "submitted": self.submitted, "started": self.started, "ended": self.ended,
        }
        if self.ok:
            record["data_b64"] = _b64_text(self.data)
        if self.reason is not None:
            record["reason"] = self.reason
        if self.reasons:
            record["reasons"] = list(self.reasons)
        if self.payload is not None:
            record["payload_b64"] = _b64_text(self.payload)
        if self.priority is not None:
            record["priority"] = self.priority.value
        if self.next_run is not None:
            record["next_run"] = self.next_run
        return record


@dataclass(frozen=True, slots=True)
class Schedule:
    """One cron schedule: a background job of ``function`` submitted per matching minute.

    ``cron`` is the five standard fields (``MIN HOUR DOM MON DOW``, 0 = Sunday);
    ``next_run`` is when it fires next and ``last_fired`` when it last did (UNIX times).
    """

    key: str
    function: str
    cron: str
    unique: str = ""
    data: bytes = b""
    priority: Priority = Priority.NORMAL
    next_run: float | None = None
    last_fired: float | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Schedule:
        return cls(key=str(record["key"]), function=str(record["function"]),
                   cron=str(record["cron"]), unique=str(record.get("unique", "")),
                   data=_b64(record.get("data_b64")) or b"",
                   priority=_priority(record.get("priority", 1)),
                   next_run=record.get("next"), last_fired=record.get("last_fired"))

    def to_json(self) -> dict[str, Any]:
        """The server's JSON form, priority by name."""
        return {"key": self.key, "function": self.function, "unique": self.unique,
                "cron": self.cron, "data_b64": _b64_text(self.data),
                "priority": self.priority.value, "next": self.next_run,
                "last_fired": self.last_fired}


def priority_name(priority: Priority | str) -> str:
    """``Priority.HIGH`` or ``"high"`` -> ``"high"``, as admin commands spell it."""
    try:
        chosen = priority if isinstance(priority, Priority) else Priority(priority.lower())
    except (AttributeError, ValueError):
        raise ValueError(f"priority must be high, normal or low, not {priority!r}") from None
    return chosen.value


@dataclass(frozen=True, slots=True)
class FunctionLimits:
    """One function's flow control as ``limits`` reports it (``gearshift admin --limits``).

    ``concurrency`` (jobs at once) and ``rate`` (``"5/s"``) are None when unlimited;
    ``admin`` is the setting changed at run time (``pause``, ``limit``), None if the
    startup rules apply unchanged; ``held`` says a limit holds its queued jobs back
    now; ``tokens`` is what is left in a rate limit's bucket.
    """

    function: str
    concurrency: int | None = None
    rate: str | None = None
    weight: int = 1
    paused: bool = False
    running: int = 0
    queued: int = 0
    held: bool = False
    admin: str | None = None
    tokens: float | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> FunctionLimits:
        return cls(function=str(record["function"]), concurrency=record.get("concurrency"),
                   rate=record.get("rate"), weight=int(record.get("weight", 1)),
                   paused=bool(record.get("paused")), running=int(record.get("running", 0)),
                   queued=int(record.get("queued", 0)), held=bool(record.get("held")),
                   admin=record.get("admin"), tokens=record.get("tokens"))


@dataclass(frozen=True, slots=True)
class ClusterServer:
    """One server sharing a store with the one asked (``AdminClient.cluster``).

    ``expires_in`` is seconds until its lease runs out as of the asked server's last
    renewal (negative: expired); ``adopted_by`` names the server that took its jobs.
    """

    server_id: str
    epoch: int
    expires_in: float
    adopted_by: str
    is_self: bool

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> ClusterServer:
        return cls(server_id=str(record["server_id"]), epoch=int(record["epoch"]),
                   expires_in=float(record["expires_in"]),
                   adopted_by=str(record.get("adopted_by", "")),
                   is_self=bool(record.get("self", False)))
