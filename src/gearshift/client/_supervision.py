"""What a worker supervisor decides, without doing any of it: which child to start when,
and what a child's exit means. :mod:`gearshift.client._processes` does the forking,
signalling and waiting; keeping the decisions here lets them be tested as plain calls.

A child reports why it is leaving in a small shared record (see :class:`ExitReason`)
before it exits; a child that leaves without one, or with a non-zero status, crashed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ExitReason(enum.IntEnum):
    """Why a child left, as it wrote it in its record before exiting."""

    #: No reason written: the child died (signal, exception, ``os._exit``).
    CRASHED = 0
    #: It was asked to stop (drain or reload) and finished its running job.
    STOPPED = 1
    #: ``worker.run`` returned by itself: ``max_jobs`` (``gearshift work -c``) or
    #: ``stop_when_idle``. Its work is done; it is not replaced.
    FINISHED = 2
    #: It ran ``max_jobs_per_child`` jobs: replaced at once by a fresh child.
    RECYCLED_JOBS = 3
    #: Its memory passed ``max_memory_per_child`` after a job: replaced at once.
    RECYCLED_MEMORY = 4

    @property
    def text(self) -> str:
        return _TEXT[self]


_TEXT = {
    ExitReason.CRASHED: "crashed",
    ExitReason.STOPPED: "stopped",
    ExitReason.FINISHED: "finished its jobs",
    ExitReason.RECYCLED_JOBS: "recycled after max-jobs-per-child",
    ExitReason.RECYCLED_MEMORY: "recycled over max-memory-per-child",
}


class CrashBackoff:
    """Delay before replacing a crashed child: none for the first crash, then doubling
    while children keep crashing soon after they start, so a worker that cannot start
    (bad code, a server that refuses it) does not fork in a tight loop.

    A child that lived ``healthy_after`` seconds or more resets the count: one crash
    after hours of work is replaced at once.
    """

    def __init__(self, base: float = 0.5, maximum: float = 30.0,
                 healthy_after: float = 10.0) -> None:
        if base <= 0 or maximum < base or healthy_after <= 0:
            raise ValueError("need 0 < base <= maximum and healthy_after > 0")
        self.base = base
        self.maximum = maximum
        self.healthy_after = healthy_after
        self.crashes_in_a_row = 0

    def delay(self, lived: float) -> float:
        """Seconds to wait before replacing a child that crashed after ``lived`` s."""
        if lived >= self.healthy_after:
            self.crashes_in_a_row = 0
        self.crashes_in_a_row += 1
        if self.crashes_in_a_row == 1:
            return 0.0
        return float(min(self.maximum, self.base * 2.0 ** (self.crashes_in_a_row - 2)))


@dataclass(frozen=True)
class Exit:
    """One child's exit as the supervisor saw it."""

    pid: int
    exitcode: int | None
    reason: ExitReason
    retiring: bool  # it was told to stop for a reload (SIGHUP): replace it at once
    dismissed: bool = False  # it was told to stop to shrink the pool: not replaced

    @property
    def crashed(self) -> bool:
        return self.reason is ExitReason.CRASHED or self.exitcode != 0

    def describe(self) -> str:
        if not self.crashed:
            return self.reason.text
        if self.exitcode is not None and self.exitcode < 0:
            return f"crashed (killed by signal {-self.exitcode})"
        return f"crashed (exit status {self.exitcode})"


def replacement_delay(exit: Exit, draining: bool, lived: float,
                      backoff: CrashBackoff) -> float | None:
    """When to start a child in place of one that exited: seconds from now, or None
    for no replacement.

    Draining (SIGTERM) replaces nothing. A child that finished its jobs (``-c``) is not
    replaced: that is the count the operator asked for. A reload or a recycle replaces at
    once; a crash after :class:`CrashBackoff`'s delay.
    """
    if draining:
        return None
    if exit.dismissed and not exit.crashed:
        return None
    if exit.crashed:
        return backoff.delay(lived)
    if exit.retiring or exit.reason in (ExitReason.RECYCLED_JOBS,
                                        ExitReason.RECYCLED_MEMORY):
        return 0.0
    if exit.reason is ExitReason.STOPPED:
        # Stopped without a drain or reload of ours: someone signalled the child itself.
        # Keep the pool at its size, as for any other unexpected exit.
        return 0.0
    return None


class Scaling:
    """How many children an autoscaling pool (``--processes MIN:MAX``) wants, from the
    backlog its servers report: queued, not running, jobs of the pool's functions.

    Up: one more child per queued job, at once, up to ``maximum``. Down: one child
    fewer per look once nothing has been queued for ``idle_after`` seconds, down to
    ``minimum`` -- slowly, because starting a child again costs more than an idle one.
    """

    def __init__(self, minimum: int, maximum: int, idle_after: float = 30.0) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError("need 1 <= MIN <= MAX processes")
        self.minimum = minimum
        self.maximum = maximum
        self.idle_after = idle_after
        self._idle_since: float | None = None

    def wanted(self, current: int, backlog: int | None, now: float) -> int:
        """The pool size to move to; ``backlog`` None: no server could be asked."""
        if backlog is None:
            return max(self.minimum, min(current, self.maximum))
        if backlog > 0:
            self._idle_since = None
            return max(self.minimum, min(self.maximum, current + backlog))
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since >= self.idle_after and current > self.minimum:
            self._idle_since = now  # the next step down waits another idle period
            return current - 1
        return max(self.minimum, min(current, self.maximum))


def parse_processes(text: str) -> tuple[int, int]:
    """``N`` or ``MIN:MAX`` from ``--processes``.

    Raises:
        ValueError: naming the text.
    """
    low, _, high = text.partition(":")
    try:
        minimum = int(low)
        maximum = int(high) if high else minimum
    except ValueError:
        raise ValueError(f"--processes {text!r}: expected N or MIN:MAX") from None
    if minimum < 1 or maximum < minimum:
        raise ValueError(f"--processes {text!r}: need 1 <= MIN <= MAX")
    return minimum, maximum
