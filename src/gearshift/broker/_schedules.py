"""Recurring background jobs: SUBMIT_JOB_SCHED and ``gearshift schedule``.

gearmand parses SUBMIT_JOB_SCHED and answers it with an ERROR; gearshift keeps a
schedule and submits one background job per slot. Cron expressions are evaluated by
``cronsim`` (a small, maintained, dependency-free cron parser); this module only turns
the packet's five fields into a cron expression, where the one difference is the day
of the week (the Gearman protocol document numbers it 0 = Monday, cron 0 = Sunday).

Each slot fires once: a schedule remembers the slot it fired last (persisted), and
slots missed while the server was down are skipped rather than run in a burst. Times
are the server's local time. No I/O here; the broker fires what :meth:`ScheduleBook.due`
returns.
"""

from __future__ import annotations

import heapq
import itertools
from datetime import datetime

from cronsim import CronSim, CronSimError

_DOW_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Schedule:
    """One recurring job (see :class:`gearshift.store.StoredSchedule`, its stored form)."""

    __slots__ = ("cron", "data", "function", "key", "last_fired", "next_fire", "priority",
                 "unique")

    def __init__(self, key: bytes, function: bytes, unique: bytes, cron: str, data: bytes,
                 priority: int = 1, last_fired: float = 0.0) -> None:
        self.key = key
        self.function = function
        self.unique = unique
        self.cron = cron
        self.data = data
        self.priority = priority
        self.last_fired = last_fired
        self.next_fire = 0.0

    def __repr__(self) -> str:
        return f"<Schedule {self.key!r} {self.function!r} {self.cron!r}>"


def next_slot(cron: str, after: float) -> float:
    """The first slot of ``cron`` strictly after unix time ``after`` (local time).

    Raises:
        ValueError: the expression is malformed or can never fire (``0 0 30 2 *``).
    """
    start = datetime.fromtimestamp(after).replace(microsecond=0)
    try:
        slot = next(CronSim(cron, start))
    except (CronSimError, StopIteration, ValueError) as exc:
        raise ValueError(f"cron expression {cron!r}: {exc or 'never fires'}") from None
    return float(slot.timestamp())  # float(): cronsim is untyped where mypyc builds


def validate_cron(cron: str, now: float) -> str:
    """``cron`` normalised to single spaces, after checking it has five fields and fires.

    Raises:
        ValueError: naming the expression.
    """
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"cron expression {cron!r}: needs 5 fields "
                         "(minute hour day-of-month month day-of-week)")
    text = " ".join(fields)
    next_slot(text, now)
    return text


def cron_from_gearman(minute: bytes, hour: bytes, mday: bytes, month: bytes,
                      wday: bytes) -> str:
    """SUBMIT_JOB_SCHED's five fields as a cron expression. An empty field means every
    value; a field may also use cron's syntax (``*/5``, ``1-5``, ``1,3``). The day of
    the week counts 0 = Monday .. 6 = Sunday, as the Gearman protocol document says.

    Raises:
        ValueError: a field that is not text, or a day of the week out of range.
    """
    try:
        parts = [f.decode("ascii").strip() or "*" for f in (minute, hour, mday, month)]
        dow = wday.decode("ascii").strip() or "*"
    except UnicodeDecodeError:
        raise ValueError("schedule fields must be ASCII numbers or cron syntax") from None
    for part in (*parts, dow):
        if any(ch.isspace() for ch in part):
            raise ValueError(f"schedule field {part!r} contains white space")
    return " ".join([*parts, _gearman_dow_to_cron(dow)])


def _gearman_dow_to_cron(field: str) -> str:
    """Map a day-of-week field numbered 0 = Monday to cron's 0 = Sunday, by expanding
    it to the days it names (names such as ``mon`` are the same in both and pass)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        rng, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"day of week {field!r}: bad step {step_text!r}")
        if rng == "*":
            low, high = 0, 6
        elif "-" in rng:
            a, _, b = rng.partition("-")
            low, high = _day(a, field), _day(b, field)
        else:
            low = high = _day(rng, field)
            if step is not None:
                high = 6
        if high < low:
            raise ValueError(f"day of week {field!r}: range {rng!r} runs backwards")
        days.update(range(low, high + 1, step or 1))
    return ",".join(str(d) for d in sorted((d + 1) % 7 for d in days))


def _day(text: str, field: str) -> int:
    lowered = text.lower()
    if lowered in _DOW_NAMES:
        return _DOW_NAMES.index(lowered)
    if not text.isdigit() or int(text) > 6:
        raise ValueError(f"day of week {field!r}: {text!r} is not 0-6 (0 = Monday) "
                         "or a day name")
    return int(text)


class ScheduleBook:
    """The schedules and a heap of their next slots.

    Heap entries of a removed or rescheduled schedule stay until reached and are
    skipped (their ``next_fire`` no longer matches), like the broker's timers.
    """

    def __init__(self) -> None:
        self.schedules: dict[bytes, Schedule] = {}
        self._heap: list[tuple[float, int, Schedule]] = []
        self._seq = itertools.count()

    def add(self, schedule: Schedule, now: float) -> Schedule | None:
        """Keep ``schedule`` and plan its next slot; returns the one it replaced (same
        key), if any.

        Raises:
            ValueError: its cron expression never fires.
        """
        # Never a slot already fired, and no catching up on slots missed while down.
        schedule.next_fire = next_slot(schedule.cron, max(schedule.last_fired, now - 1.0))
        old = self.schedules.get(schedule.key)
        self.schedules[schedule.key] = schedule
        heapq.heappush(self._heap, (schedule.next_fire, next(self._seq), schedule))
        return old

    def find(self, function: bytes, unique: bytes) -> Schedule | None:
        """The schedule submitted for (function, unique), if the unique is not empty:
        submitting it again replaces it rather than adding a second one."""
        if not unique:
            return None
        for schedule in self.schedules.values():
            if schedule.function == function and schedule.unique == unique:
                return schedule
        return None

    def remove(self, key: bytes) -> Schedule | None:
        return self.schedules.pop(key, None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and self.schedules.get(heap[0][2].key) is not heap[0][2]:
            heapq.heappop(heap)  # removed or replaced since
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[Schedule]:
        """Schedules whose slot has come, each once, already moved on to their next
        slot (``last_fired`` is the slot that came)."""
        fired: list[Schedule] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, schedule = heapq.heappop(heap)
            if self.schedules.get(schedule.key) is not schedule or schedule.next_fire != when:
                continue
            schedule.last_fired = when
            schedule.next_fire = next_slot(schedule.cron, max(when, now - 1.0))
            heapq.heappush(heap, (schedule.next_fire, next(self._seq), schedule))
            fired.append(schedule)
        return fired

    def __len__(self) -> int:
        return len(self.schedules)
