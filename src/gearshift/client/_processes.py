"""A supervised pool of worker processes: N forked children, each running a blocking
:class:`Worker`, kept alive, recycled and reloaded by the parent.

Threads (``concurrency=N``) suit jobs that wait on I/O; Python code that burns CPU needs
processes, and production needs more than forking once: a child that crashes is replaced
(with a backoff when children keep crashing at start), a child that ran
``max_jobs_per_child`` jobs or grew past ``max_memory_per_child`` is replaced between jobs,
SIGHUP replaces every child once it has finished its running job (graceful reload),
SIGTERM drains (every child finishes its running job, none is replaced) and a second
SIGTERM stops now. The parent only supervises; it runs no job.

How the parent and a child talk: signals down (SIGTERM drain, SIGQUIT stop now), and a
small shared record up (why the child left, jobs done and failed), read after the exit.
What each exit means and when to replace it is decided in
:mod:`gearshift.client._supervision`, without I/O. Signal handlers here only queue a
request and wake the loop: all work happens in the supervising loop, never inside a
handler.

Children run in their own process group, so a Ctrl-C at a terminal reaches the
supervisor only (which drains them) rather than every child at once; a child whose
parent died stops taking jobs by itself. POSIX only (``fork``: handlers need not be
picklable). To load new Python code on reload, pass a factory that imports your job
module itself (see :class:`WorkerProcesses`): a forked child has the parent's modules.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from types import FrameType, TracebackType
from typing import Any, Self

from gearshift.client._pool_watch import BacklogProbe, ChangeWatch, write_status
from gearshift.client._supervision import (
    CrashBackoff,
    Exit,
    ExitReason,
    Scaling,
    replacement_delay,
)
from gearshift.client._sync._worker import Job, Worker

log = logging.getLogger("gearshift.client.supervisor")

WorkerSource = Worker | Callable[[], Worker]

# Slots of a child's shared record; its current job's "handle\tfunction" is in a
# second, byte array (empty between jobs).
_REASON, _DONE, _FAILED, _JOB_SINCE_MS = 0, 1, 2, 3
_RECORD_SLOTS = 4
_JOB_TEXT = 512
#: Seconds between the supervisor's looks at backlog, watched files and its status file.
LOOK_EVERY = 1.0


def resident_memory() -> int:
    """This process's resident set size in bytes (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Child:
    """One forked child as the parent tracks it."""

    def __init__(self, process: multiprocessing.process.BaseProcess, record: Any,
                 job: Any) -> None:
        self.process = process
        self.record = record
        self.job = job
        self.started = time.monotonic()
        self.started_at = time.time()
        self.retiring = False  # told to stop for a reload: replace it when it leaves
        self.dismissed = False  # told to stop to shrink the pool: not replaced
        self.signalled = False  # got a drain SIGTERM already

    def status(self) -> dict[str, Any]:
        """What the status file says of this child."""
        running = None
        text = bytes(self.job.value).decode("utf-8", "replace")
        if text:
            handle, _, function = text.partition("\t")
            running = {"handle": handle, "function": function,
                       "since": self.record[_JOB_SINCE_MS] / 1000.0}
        return {"pid": self.pid, "started": self.started_at, "jobs_done": self.record[_DONE],
                "jobs_failed": self.record[_FAILED], "job": running,
                "stopping": self.retiring or self.dismissed or self.signalled}

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # gone: its exit is being reported
            os.kill(self.pid, signum)


class WorkerProcesses:
    """``processes`` supervised children, each running ``worker.run(**run_kwargs)``.

    Args:
        worker: the :class:`Worker` to run in every child, or a factory returning one,
            called in each child after the fork (so a reload re-imports what it imports).
        processes: how many children to keep alive, or ``(MIN, MAX)``: scale between
            them by the backlog of the worker's functions on its servers (needs a
            :class:`Worker`, not a factory, to know which functions and servers).
        reload_on_change: files or directories whose change triggers a reload.
        status_file: where to write, every second, the children and their jobs (JSON).
        scale_down_after: with ``(MIN, MAX)``, seconds without backlog before each step
            down by one child.
        max_jobs_per_child: replace a child after this many jobs (leaky job code).
        max_memory_per_child: replace a child whose resident memory is above this many
            bytes after a job.
        grace: seconds a "stop now" waits for children before SIGKILL.
        backoff: delays before replacing children that crash soon after starting.
    """

    def __init__(self, worker: WorkerSource, processes: int | tuple[int, int], *,
                 max_jobs_per_child: int | None = None,
                 max_memory_per_child: int | None = None,
                 grace: float = 10.0, backoff: CrashBackoff | None = None,
                 reload_on_change: Sequence[str | os.PathLike[str]] = (),
                 status_file: str | os.PathLike[str] | None = None,
                 scale_down_after: float = 30.0) -> None:
        minimum, maximum = processes if isinstance(processes, tuple) else (processes,
                                                                            processes)
        if minimum < 1:
            raise ValueError("processes must be at least 1")
        self.scaling: Scaling | None = None
        self._probe: BacklogProbe | None = None
        if maximum > minimum:
            if not isinstance(worker, Worker):
                raise ValueError("autoscaling (MIN:MAX processes) needs a Worker, "
                                 "not a factory: it reads the backlog of its functions")
            self.scaling = Scaling(minimum, maximum, scale_down_after)
            self._probe = BacklogProbe(worker.servers, worker.function_names())
        processes = minimum
        if max_jobs_per_child is not None and max_jobs_per_child < 1:
            raise ValueError("max_jobs_per_child must be at least 1")
        if max_memory_per_child is not None and max_memory_per_child < 1:
            raise ValueError("max_memory_per_child must be positive")
        self.worker = worker
        self.processes = processes
        self.max_jobs_per_child = max_jobs_per_child
        self.max_memory_per_child = max_memory_per_child
        self.grace = grace
        self.backoff = backoff or CrashBackoff()
        #: Every child exit seen, oldest first (pid, status, reason).
        self.exits: list[Exit] = []
        self._context = multiprocessing.get_context("fork")
        self._children: list[_Child] = []
        self._last_codes: list[int | None] = []
        self._run_kwargs: dict[str, Any] = {}
        self._requests: collections.deque[str] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # Closed with the pool, not when supervision ends: a late stop() from a signal
        # handler must never write into a descriptor number reused by something else.
        weakref.finalize(self, _close_all, self._wake_r, self._wake_w)
        self._draining = False
        self._kill_at: float | None = None
        self._pending: list[float] = []  # monotonic times at which to start a child
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._failed = False
        self._changes: ChangeWatch | None = None
        if reload_on_change:
            self._changes = ChangeWatch([os.fspath(p) for p in reload_on_change],
                                        ignore=os.fspath(status_file) if status_file else None)
        self.status_file = status_file
        self._next_look = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} x{self.processes} pids={self.pids}>"

    @property
    def pids(self) -> list[int]:
        """The live children's pids."""
        return [child.pid for child in self._children]

    # ------------------------------------------------------------ requests

    def stop(self) -> None:
        """Drain: every child finishes its running job and exits; none is replaced."""
        self._request("stop")

    def stop_now(self) -> None:
        """Stop now: children abandon their jobs; SIGKILL after ``grace`` seconds."""
        self._request("stop_now")

    def reload(self) -> None:
        """Replace every child once it has finished its running job (SIGHUP)."""
        self._request("reload")

    def _request(self, what: str) -> None:
        # Called from signal handlers too: a deque append and a pipe write are safe there.
        self._requests.append(what)
        with contextlib.suppress(OSError):  # pipe full (already woken) or closed
            os.write(self._wake_w, b"!")

    # ------------------------------------------------------------- running

    def start(self, **run_kwargs: Any) -> Self:
        """Fork the children and supervise them from a background thread."""
        self._begin(run_kwargs)
        self._thread = threading.Thread(target=self._supervise, name="gearshift-supervisor",
                                        daemon=True)
        self._thread.start()
        return self

    def run(self, **run_kwargs: Any) -> int:
        """Fork, supervise in this thread until every child has left; 0 unless the last
        children crashed. In the main thread, SIGTERM/SIGINT drain (twice: stop now)
        and SIGHUP reloads."""
        self._begin(run_kwargs)
        restore = self._install_signals()
        try:
            self._supervise()
        finally:
            for sig, previous in restore.items():
                signal.signal(sig, previous)
        return 1 if self._failed else 0

    def wait(self, timeout: float | None = None) -> list[int | None]:
        """Wait for the supervision to end; the exit codes of the last children (None
        for one still running when ``timeout`` passed)."""
        self._done.wait(timeout)
        if not self._done.is_set():
            return [child.process.exitcode for child in self._children]
        return list(self._last_codes)

    def _begin(self, run_kwargs: dict[str, Any]) -> None:
        if self._children or self._thread is not None:
            raise RuntimeError("this pool was started already")
        self._run_kwargs = {k: v for k, v in run_kwargs.items() if k != "handle_signals"}
        for _ in range(self.processes):
            self._spawn()

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        terms = 0

        def on_term(signum: int, frame: FrameType | None) -> None:
            nonlocal terms
            terms += 1
            self._request("stop" if terms == 1 else "stop_now")

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self._request("reload")

        handlers = {signal.SIGTERM: on_term, signal.SIGINT: on_term, signal.SIGHUP: on_hup}
        return {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}

    def _spawn(self) -> None:
        record = self._context.RawArray("q", _RECORD_SLOTS)
        job = self._context.RawArray("c", _JOB_TEXT)
        process = self._context.Process(
            target=_child_main, name="gearshift-worker", daemon=True,
            args=(self.worker, record, job, os.getpid(), self._run_kwargs,
                  self.max_jobs_per_child, self.max_memory_per_child))
        process.start()
        child = _Child(process, record, job)
        self._children.append(child)
        log.info("started worker process %d", child.pid)

    # ---------------------------------------------------------- supervising

    def _supervise(self) -> None:
        try:
            while self._children or (self._pending and not self._draining):
                self._serve_requests()
                self._start_due()
                self._look_around()
                self._wait_for_events()
                self._escalate()
        finally:
            if self._probe is not None:
                self._probe.close()
            if self.status_file is not None:
                write_status(self.status_file, self.status())
            self._done.set()

    def _serve_requests(self) -> None:
        while self._requests:
            what = self._requests.popleft()
            if what == "stop" and not self._draining:
                log.info("draining %d worker processes", len(self._children))
                self._draining = True
                self._pending.clear()
                for child in self._children:
                    child.signalled = True
                    child.signal(signal.SIGTERM)
            elif what == "stop_now" and self._kill_at is None:
                log.info("stopping %d worker processes now", len(self._children))
                self._draining = True
                self._pending.clear()
                self._kill_at = time.monotonic() + self.grace
                for child in self._children:
                    child.signal(signal.SIGQUIT)
            elif what == "reload" and not self._draining:
                log.info("reloading: replacing %d worker processes as they finish their jobs",
                         len(self._children))
                for child in self._children:
                    child.retiring = True
                    child.signal(signal.SIGTERM)

    def _look_around(self) -> None:
        """Once a second: files changed (reload), backlog (scale), the status file."""
        now = time.monotonic()
        if now < self._next_look or self._draining:
            return
        self._next_look = now + LOOK_EVERY
        if self._changes is not None:
            changed = self._changes.changed()
            if changed:
                log.info("%s changed", ", ".join(map(str, changed[:3])))
                self._requests.append("reload")
                self._serve_requests()
        if self.scaling is not None and self._probe is not None:
            self._scale(self.scaling.wanted(self._size(), self._probe.backlog(), now))
        if self.status_file is not None:
            write_status(self.status_file, self.status())

    def _size(self) -> int:
        """Children the pool counts on: live and not leaving for good, plus those due."""
        staying = [c for c in self._children if not c.dismissed and not c.signalled]
        return len(staying) + len(self._pending)

    def _scale(self, wanted: int) -> None:
        size = self._size()
        if wanted > size:
            log.info("backlog: %d -> %d worker processes", size, wanted)
            self._pending.extend([time.monotonic()] * (wanted - size))
            self._start_due()
        elif wanted < size:
            idle = [c for c in self._children if not c.dismissed and not c.retiring
                    and not bytes(c.job.value)]
            if idle:
                child = idle[-1]  # the youngest idle child
                log.info("idle: %d -> %d worker processes (stopping %d)", size, wanted,
                         child.pid)
                child.dismissed = True
                child.signal(signal.SIGTERM)

    def status(self) -> dict[str, Any]:
        """The pool as the status file shows it."""
        return {"supervisor": os.getpid(), "time": time.time(), "draining": self._draining,
                "target": self._size(),
                "children": [child.status() for child in self._children]}

    def _start_due(self) -> None:
        now = time.monotonic()
        due = [when for when in self._pending if when <= now]
        self._pending = [when for when in self._pending if when > now]
        for _ in due:
            self._spawn()

    def _wait_for_events(self) -> None:
        timeout = 1.0
        if self._pending:
            timeout = max(0.0, min(timeout, min(self._pending) - time.monotonic()))
        if self._kill_at is not None:
            timeout = max(0.0, min(timeout, self._kill_at - time.monotonic()))
        sentinels = {child.process.sentinel: child for child in self._children}
        ready = multiprocessing.connection.wait([*sentinels, self._wake_r], timeout)
        for item in ready:
            if item == self._wake_r:
                os.read(self._wake_r, 4096)
            elif isinstance(item, int) and item in sentinels:
                self._reap(sentinels[item])

    def _reap(self, child: _Child) -> None:
        child.process.join()
        self._children.remove(child)
        record = child.record
        try:
            reason = ExitReason(record[_REASON])
        except ValueError:
            reason = ExitReason.CRASHED
        exit = Exit(child.pid, child.process.exitcode, reason, child.retiring,
                    child.dismissed)
        self.exits.append(exit)
        lived = time.monotonic() - child.started
        delay = replacement_delay(exit, self._draining, lived, self.backoff)
        what = f"worker process {child.pid} {exit.describe()} after {lived:.1f} s: " \
               f"{record[_DONE]} jobs done, {record[_FAILED]} failed"
        if delay is None:
            log.info("%s", what)
        else:
            (log.warning if exit.crashed else log.info)(
                "%s; replacing it%s", what, f" in {delay:.1f} s" if delay else "")
            self._pending.append(time.monotonic() + delay)
        if not self._children and not self._pending:
            self._failed = exit.crashed
        self._last_codes.append(child.process.exitcode)
        del self._last_codes[:-self.processes]

    def _escalate(self) -> None:
        if self._kill_at is not None and time.monotonic() >= self._kill_at:
            for child in self._children:
                log.warning("worker process %d still running %.0f s after stop: SIGKILL",
                            child.pid, self.grace)
                child.signal(signal.SIGKILL)
            self._kill_at = float("inf")

    # ------------------------------------------------------ context manager

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.wait(15)
        if not self._done.is_set():
            self.stop_now()
            self.wait(self.grace + 5)


def _close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _child_main(source: WorkerSource, record: Any, job_text: Any, parent: int,
                run_kwargs: dict[str, Any], max_jobs_per_child: int | None,
                max_memory: int | None) -> None:
    """A child's life: its own process group, signal handlers, a watch on its parent,
    then the worker until it stops, writing why it left in ``record``."""
    os.setpgid(0, 0)
    worker = source if isinstance(source, Worker) else source()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the parent's business

    def on_term(signum: int, frame: FrameType | None) -> None:
        record[_REASON] = ExitReason.STOPPED
        worker.stop()

    def on_quit(signum: int, frame: FrameType | None) -> None:
        record[_REASON] = ExitReason.STOPPED
        worker.stop_now()  # running jobs are stopped, unreported: the server requeues them

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGQUIT, on_quit)
    threading.Thread(target=_watch_parent, args=(parent, worker), daemon=True).start()

    def before_job(job: Job) -> None:
        record[_JOB_SINCE_MS] = int(time.time() * 1000)
        job_text.value = (job.handle + b"\t" + job.function)[:_JOB_TEXT - 1]

    def after_job(finished: Worker) -> None:
        job_text.value = b""
        record[_DONE] = finished.jobs_done
        record[_FAILED] = finished.jobs_failed
        if max_memory is not None and resident_memory() > max_memory:
            record[_REASON] = ExitReason.RECYCLED_MEMORY
            finished.stop()

    count = run_kwargs.get("max_jobs")
    limit = count
    if max_jobs_per_child is not None and (count is None or max_jobs_per_child < count):
        limit = max_jobs_per_child
    worker.run(**{**run_kwargs, "max_jobs": limit}, after_job=after_job,
               before_job=before_job)
    if record[_REASON] == ExitReason.CRASHED:  # nothing stopped it: it ran out by itself
        recycled = limit != count and limit is not None and worker.jobs_done >= limit
        record[_REASON] = ExitReason.RECYCLED_JOBS if recycled else ExitReason.FINISHED


def _watch_parent(parent: int, worker: Worker) -> None:
    """Stop taking jobs once the supervisor is gone (it can no longer stop us)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    log.warning("supervisor %d is gone: finishing the running job and exiting", parent)
    worker.stop()
