"""Run a blocking :class:`Worker` in N forked processes, for CPU-bound job functions.

Threads (``concurrency=N``) suit jobs that wait on I/O; Python code that burns CPU needs
processes. Each child runs ``worker.run(...)`` with its own connections (so each still
holds one job per connection, as the protocol says); the parent only supervises:
SIGTERM/SIGINT are forwarded so every child finishes its running job and exits.
POSIX only (uses the ``fork`` start method, so handlers need not be picklable).
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any, Self

from gearshift.client._sync._worker import Worker


class WorkerProcesses:
    """``processes`` children, each running ``worker.run(**run_kwargs)``."""

    def __init__(self, worker: Worker, processes: int) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.worker = worker
        self.processes = processes
        self._children: list[multiprocessing.process.BaseProcess] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} x{self.processes} pids={self.pids}>"

    @property
    def pids(self) -> list[int]:
        return [child.pid for child in self._children if child.pid is not None]

    def start(self, **run_kwargs: Any) -> Self:
        context = multiprocessing.get_context("fork")
        kwargs = {**run_kwargs, "handle_signals": True}
        for _ in range(self.processes):
            child = context.Process(target=self.worker.run, kwargs=kwargs, daemon=True)
            child.start()
            self._children.append(child)
        return self

    def stop(self) -> None:
        """SIGTERM every child: each finishes its running job, then exits."""
        for child in self._children:
            if child.is_alive():
                child.terminate()

    def wait(self, timeout: float | None = None) -> list[int | None]:
        """Exit codes (None for a child still running when ``timeout`` passed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for child in self._children:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            child.join(left)
        return [child.exitcode for child in self._children]

    def run(self, **run_kwargs: Any) -> int:
        """Start, forward SIGTERM/SIGINT to the children, wait; 0 if every child exited 0."""
        self.start(**run_kwargs)
        restore: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            def forward(signum: int, frame: FrameType | None) -> None:
                self.stop()
            restore = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM,
                                                                    signal.SIGINT)}
        try:
            while any(child.is_alive() for child in self._children):
                self.wait(0.5)
        finally:
            for sig, previous in restore.items():
                signal.signal(sig, previous)
        return 0 if all(code == 0 for code in self.wait(0)) else 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.wait(15)
        for child in self._children:
            if child.is_alive():
                child.kill()
                child.join()
