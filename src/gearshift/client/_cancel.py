"""Stopping a running job: why it was stopped, and who does the stopping.

A job is stopped when its function's timeout passes, or when its worker stops now. The
job function can say how to stop its work with ``job.on_cancel(callback)`` (the
``gearshift work`` command handler kills the command's process group); without one,
the worker interrupts the function itself -- the asyncio worker cancels its task, the
blocking worker raises :class:`JobCancelled` in the thread running it (see
``_backends.sync_.run_stoppable`` for what that can and cannot interrupt).
No I/O here: the backends arm the timers and provide the interrupt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("gearshift.client.worker")


class JobCancelled(BaseException):
    """Raised in a job function that is being stopped (``.reason`` says why).

    A BaseException, like ``asyncio.CancelledError``, so that ``except Exception`` in job
    code does not swallow it and carry on after its deadline.
    """

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason


def timeout_reason(seconds: float) -> str:
    """The failure reason of a job stopped by its timeout, as clients see it."""
    return f"timeout after {seconds:g} s"


class Cancellation:
    """One running job's stop switch: thread-safe, fires once, and only while the job
    function is still running (a stop that comes after it returned does nothing)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._callbacks: list[Callable[[], object]] = []
        self._interrupt: Callable[[], object] | None = None
        self._running = True
        self._lock = threading.RLock()

    def add(self, callback: Callable[[], object]) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def set_interrupt(self, interrupt: Callable[[], object]) -> None:
        """What stops the job function when it registered no callback of its own."""
        self._interrupt = interrupt

    def cancel(self, reason: str) -> bool:
        """Stop the work for ``reason``; False if it had ended or was stopped already.

        Callbacks run under the lock, so none runs after :meth:`finish`: they must be
        quick (send a signal, cancel a task) and must not wait for the job.
        """
        with self._lock:
            if self.reason is not None or not self._running:
                return False
            self.reason = reason
            stoppers = list(self._callbacks)
            if not stoppers and self._interrupt is not None:
                stoppers = [self._interrupt]
            for stop in stoppers:
                try:
                    stop()
                except Exception:  # one broken callback must not keep the others from running
                    log.exception("stopping a job: callback %r failed", stop)
            return True

    def finish(self) -> None:
        """The job function has returned: later stops do nothing."""
        with self._lock:
            self._running = False
