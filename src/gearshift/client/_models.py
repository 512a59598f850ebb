"""Value objects shared by both flavours: priorities, status replies, job events, tasks.

A :class:`Task` is the client's record of one submission. It changes state only through
the packet router (:mod:`._protocol`), never through I/O, so the asyncio and blocking
clients share it unchanged.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gearshift.client._errors import GearmanError, JobException, JobFailed
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
