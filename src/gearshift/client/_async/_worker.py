"""AsyncWorker: register functions, take jobs from every server, run them, report back.

Protocol discipline (gearmand.md 2.6): a connection holds at most one job. When the server
says NO_JOB the connection sends PRE_SLEEP and blocks until the server's NOOP -- there is
no polling. ``concurrency=N`` opens N connections per server, each with its own loop.
If a connection drops, its loop reconnects with exponential backoff and registers every
function again, so a restarted server gets its workers back without help.

Stopping: :meth:`stop` (or SIGTERM with ``handle_signals=True``) lets running jobs finish
and report, takes no new job, and wakes sleeping connections by closing them.

Failures: a raising job is logged at WARNING with its traceback and reported as
WORK_EXCEPTION (with the reason) or as a bare WORK_FAIL -- see ``exceptions`` on
:class:`AsyncWorker`. In the default "auto" mode each connection starts with
``OPTION_REQ gearshift``, sent in the same write as the registrations. Nothing waits for
the answer: servers answer in order, so it arrives before the reply to the first
GRAB_JOB_ALL and is picked up by the same read loop. Until an OPTION_RES has been seen
(gearmand answers ERROR UNKNOWN_OPTION; a server that answers nothing leaves it unknown)
the connection sends bare WORK_FAIL, which every server and client understands.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from ssl import SSLContext
from typing import Any

from gearshift.client._backends.asyncio_ import (
    AsyncEvent,
    AsyncWatch,
    add_stop_signals,
    call_handler,
    run_all,
    run_stoppable,
)
from gearshift.client._cancel import Cancellation, JobCancelled
from gearshift.client._errors import (
    ConnectionFailed,
    ConnectionLost,
    GearmanError,
    GearmanTimeout,
)
from gearshift.client._payload import Codec, get_codec, to_bytes
from gearshift.client._servers import Address, Backoff, parse_address, parse_servers
from gearshift.client._tls import TlsChoice
from gearshift.protocol import ErrorCode, Packet, encode_request
from gearshift.protocol import PacketType as P

from ._client import AsyncClient
from ._connection import AsyncConnection

log = logging.getLogger(__name__)

Handler = Callable[..., Any]
#: Turns a map job's reduced partitions (in order) into its result.
Aggregator = Callable[[list[bytes]], Any]
_ASSIGN = (P.JOB_ASSIGN, P.JOB_ASSIGN_UNIQ, P.JOB_ASSIGN_ALL)

#: The option a gearshift server answers with OPTION_RES (gearmand: ERROR UNKNOWN_OPTION).
GEARSHIFT_OPTION = b"gearshift"
#: Longest WORK_EXCEPTION reason sent, in bytes: enough for a message and some context,
#: small enough that a huge exception text cannot bloat every waiting client's reply.
MAX_REASON = 4096
#: Seconds past a function's timeout at which the server takes the job back
#: (CAN_DO_TIMEOUT) if the worker has not reported it: long enough for the worker to
#: stop the job (SIGTERM, then SIGKILL after a grace period) and report its failure.
TIMEOUT_BACKSTOP = 10.0
#: Seconds a job runs before its connection is watched for the server's "stop this job"
#: (a gearshift server's WORK_FAIL HANDLE, sent when the job is cancelled): shorter jobs
#: end before a cancel could matter, and cost no reader.
WATCH_AFTER = 0.1
#: The reason a job stopped because the server cancelled it.
CANCELLED_BY_SERVER = "cancelled"


class ReduceFailed(Exception):
    """A map job's reducer failed for one of its partitions (the job fails)."""


def failure_reason(exc: BaseException, limit: int = MAX_REASON) -> bytes:
    """``"Type: message"`` as UTF-8, cut to ``limit`` bytes (whole characters, marked)."""
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not stop the worker
        message = "<unprintable>"
    if isinstance(exc, JobCancelled):  # the reason is the whole story
        return exc.reason.encode()[:limit]
    name = type(exc).__name__
    text = (f"{name}: {message}" if message else name).encode(errors="replace")
    if len(text) <= limit:
        return text
    marker = b" [...]"
    return text[:limit - len(marker)].decode(errors="ignore").encode() + marker


class AsyncJob:
    """The job a function is running: its data, plus ways to report while it runs."""

    def __init__(self, conn: AsyncConnection, packet: Packet) -> None:
        ptype, fields = packet
        self._conn = conn
        self.handle = fields[0]
        self.function = fields[1]
        self.unique = fields[2] if ptype != P.JOB_ASSIGN else b""
        self.reducer = fields[3] if ptype == P.JOB_ASSIGN_ALL else b""
        self.data = fields[-1]
        self._control = Cancellation()
        # A map job (JOB_ASSIGN_ALL naming a reducer): send_data collects partitions,
        # each run by the reducer function once the mapper is done (see _reduce).
        self._partitions: list[bytes] | None = [] if self.reducer else None
        self._ended_by_server = False  # cancelled: the server expects no report

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.function!r} {self.handle!r}>"

    @property
    def cancelled(self) -> str | None:
        """Why this job is being stopped (``"timeout after 30 s"``), or None."""
        return self._control.reason

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` (from another thread or a timer) to stop this job's work
        when it times out or its worker stops now -- e.g. kill the process it started.
        Without one, the worker interrupts the job function itself. Keep it quick."""
        self._control.add(callback)

    async def send_data(self, data: Any) -> None:
        """WORK_DATA: a chunk of partial result, streamed to waiting clients. In a map
        job (one submitted with a reducer) it is a partition for the reducer instead."""
        if self._partitions is not None:
            self._partitions.append(to_bytes(data))
            return
        await self._conn.send(encode_request(P.WORK_DATA, self.handle, to_bytes(data)))

    async def send_warning(self, data: Any) -> None:
        await self._conn.send(encode_request(P.WORK_WARNING, self.handle, to_bytes(data)))

    async def send_status(self, numerator: int, denominator: int) -> None:
        """WORK_STATUS: progress as numerator/denominator."""
        await self._conn.send(encode_request(P.WORK_STATUS, self.handle, b"%d" % numerator,
                                             b"%d" % denominator))


class _Registration:
    def __init__(self, name: bytes, handler: Handler, timeout: float | None,
                 can_do_timeout: float | None = None,
                 aggregator: Aggregator | None = None) -> None:
        self.name = name
        self.handler = handler
        self.timeout = timeout
        self.can_do_timeout = can_do_timeout
        self.aggregator = aggregator

    def packet(self) -> bytes:
        if self.can_do_timeout:  # gearmand's own semantics: the server requeues the job
            return encode_request(P.CAN_DO_TIMEOUT, self.name,
                                  b"%d" % int(self.can_do_timeout * 1000))
        if self.timeout:
            # The worker stops the job at ``timeout`` itself and reports why; the server's
            # CAN_DO_TIMEOUT (milliseconds) is only a backstop for a worker that hangs.
            backstop = self.timeout + TIMEOUT_BACKSTOP
            return encode_request(P.CAN_DO_TIMEOUT, self.name, b"%d" % int(backstop * 1000))
        return encode_request(P.CAN_DO, self.name)


class AsyncWorker:
    """Runs registered functions for jobs from one or more servers.

    Args:
        servers: as for the client (None reads ``GEARMAN_SERVERS``).
        client_id: sent with SET_CLIENT_ID (shown by the admin ``workers`` command).
        concurrency: connections per server, i.e. jobs run at the same time per server.
        exceptions: how a raised exception is reported. None (the default, "auto"):
            WORK_EXCEPTION with :func:`failure_reason` on connections to a gearshift
            server (it answered ``OPTION_REQ gearshift``), bare WORK_FAIL elsewhere --
            gearmand turns WORK_EXCEPTION into ``WORK_FAIL HANDLE\\0`` for clients that
            did not ask for exceptions, and some clients (Perl Gearman::Client) reject
            that trailing NUL, so libgearman workers send bare WORK_FAIL. True: always
            WORK_EXCEPTION; False: always bare WORK_FAIL.
        connect_timeout: per connection attempt (TLS handshake included).
        ssl: connect with TLS, as for the client (an ``ssl.SSLContext`` or True).
    """

    def __init__(self, servers: str | Sequence[str | Address] | None = None, *,
                 client_id: str | None = None, concurrency: int = 1,
                 exceptions: bool | None = None,
                 connect_timeout: float = 5.0, ssl: SSLContext | bool | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.servers = parse_servers(servers)
        self.client_id = client_id
        self.concurrency = concurrency
        self.exceptions = exceptions
        self.connect_timeout = connect_timeout
        self._tls = TlsChoice(ssl, self.servers)
        self._ssl = ssl
        self.jobs_done = 0
        self.jobs_failed = 0
        self._after_job: Callable[[AsyncWorker], object] | None = None
        self._before_job: Callable[[AsyncJob], object] | None = None
        self._running: set[AsyncJob] = set()
        self._abandoning = False
        self._functions: dict[bytes, _Registration] = {}
        self._stopping = AsyncEvent()
        self._sleeping: set[AsyncConnection] = set()
        self._claimed = 0
        self._max_jobs: int | None = None
        self._registered: dict[Address, int] = {}
        self._finished = False
        # Per connection in "auto" mode: None while OPTION_REQ gearshift is unanswered,
        # then whether the server is gearshift. Each connection is read by one slot only.
        self._gearshift: dict[AsyncConnection, bool | None] = {}

    def __repr__(self) -> str:
        names = ", ".join(n.decode(errors="replace") for n in self._functions)
        return f"<{type(self).__name__} [{names}] x{self.concurrency}>"

    # ------------------------------------------------------------ registration

    def register(self, name: str | bytes, handler: Handler, *,
                 timeout: float | None = None,
                 can_do_timeout: float | None = None,
                 aggregator: Aggregator | None = None) -> None:
        """Run ``handler(job)`` for jobs of ``name``; it returns bytes, str or None.

        ``timeout`` (seconds): a job still running then is stopped (``job.on_cancel``
        callbacks, else the handler is interrupted -- see :class:`AsyncJob`) and fails
        with the reason ``"timeout after S s"``. The server is also told (CAN_DO_TIMEOUT)
        to take the job back ``TIMEOUT_BACKSTOP`` seconds later, should the worker hang.

        ``can_do_timeout`` (seconds) asks for gearmand's behaviour instead: only
        CAN_DO_TIMEOUT, the server silently requeues a job that runs longer, and the
        handler is left running.

        Map/reduce (a job submitted with SUBMIT_REDUCE_JOB, naming a reducer function),
        as libgearman's mapper functions do: the handler is the mapper; each
        ``job.send_data(part)`` -- and its return value, if not empty -- is a partition,
        submitted as a job of the reducer function once the handler returns (all at
        once, on the same servers); ``aggregator(results)`` turns the reducers' results,
        in partition order, into the job's result (default: joined). A failed reducer
        fails the job.
        """
        for value in (timeout, can_do_timeout):
            if value is not None and value <= 0:
                raise ValueError("timeouts must be positive")
        key = to_bytes(name)
        self._functions[key] = _Registration(key, handler, timeout, can_do_timeout,
                                             aggregator)

    def function(self, name: str | None = None, *,
                 timeout: float | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`register`; the name defaults to the function's name."""
        def decorate(handler: Handler) -> Handler:
            self.register(name or handler.__name__, handler, timeout=timeout)
            return handler
        return decorate

    def task(self, name: str | None = None, *, codec: str | Codec = "json",
             timeout: float | None = None) -> Callable[[Handler], Handler]:
        """Decorator for Python-to-Python tasks: the function receives the decoded payload
        and returns a value the codec encodes (pair with ``client.call``)."""
        chosen = get_codec(codec)

        def decorate(handler: Handler) -> Handler:
            async def run(job: AsyncJob) -> bytes:
                result = await call_handler(handler, chosen.decode(job.data))
                return chosen.encode(result)
            self.register(name or handler.__name__, run, timeout=timeout)
            return handler
        return decorate

    # ----------------------------------------------------------------- running

    async def run(self, *, max_jobs: int | None = None, stop_when_idle: bool = False,
                  handle_signals: bool = False,
                  after_job: Callable[[AsyncWorker], object] | None = None,
                  before_job: Callable[[AsyncJob], object] | None = None) -> None:
        """Work until :meth:`stop`, until ``max_jobs`` jobs ran, or -- with
        ``stop_when_idle`` -- until every connection has been told NO_JOB.

        ``after_job(worker)`` is called after each job has been reported (a supervisor
        counts jobs and recycles a process there); it may call :meth:`stop`.
        ``before_job(job)`` is called as each job starts (a supervisor's status file)."""
        if not self._functions:
            raise ValueError("register at least one function before running the worker")
        if self._finished:  # a new run after a completed one starts un-stopped
            self._stopping, self._finished, self._claimed = AsyncEvent(), False, 0
        self._max_jobs = max_jobs
        self._after_job = after_job
        self._before_job = before_job
        restore = add_stop_signals(self.stop) if handle_signals else None
        try:
            await run_all([functools.partial(self._serve, address, stop_when_idle)
                           for address in self.servers for _ in range(self.concurrency)])
        finally:
            self._finished = True
            if restore is not None:
                restore()

    def stop(self) -> None:
        """Finish running jobs, take no new ones, wake sleeping connections so they exit."""
        self._stopping.set()
        for conn in list(self._sleeping):
            conn.abort()

    def stop_now(self, reason: str = "worker stopped") -> None:
        """Stop running jobs too, without reporting them: each job's work is stopped
        (see :meth:`AsyncJob.on_cancel`) and its connection closed, so the server gives it
        to another worker, as for any lost worker."""
        self._abandoning = True
        self.stop()
        for job in list(self._running):
            job._control.cancel(reason)

    def function_names(self) -> list[str]:
        """The registered functions' names (as the admin ``status`` command shows them)."""
        return [name.decode("utf-8", "replace") for name in self._functions]

    def registrations(self, address: Address | str) -> int:
        """How many times this worker has registered with a server (reconnects count)."""
        key = address if isinstance(address, Address) else parse_address(address)
        return self._registered.get(key, 0)

    async def _serve(self, address: Address, stop_when_idle: bool) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                conn = await AsyncConnection.open(address, self.connect_timeout,
                                                  self._tls(address))
            except (ConnectionFailed, GearmanTimeout) as exc:
                # Said once per outage (a dead server must not be silent, nor spam).
                log.log(logging.DEBUG if backoff.failures else logging.WARNING,
                        "worker cannot reach %s (%s); retrying every %.0f s or less",
                        address, exc, backoff.cap)
                await self._stopping.wait(backoff.failed(time.monotonic()))
                continue
            if backoff.failures:
                log.warning("worker connected to %s", address)
            backoff.succeeded()
            try:
                await self._register(conn)
                if await self._work(conn, stop_when_idle):
                    return
            except ConnectionLost as exc:
                if not self._stopping.is_set():
                    log.warning("worker lost %s (%s); reconnecting", address, exc)
                    await self._stopping.wait(backoff.failed(time.monotonic()))
            finally:
                self._sleeping.discard(conn)
                self._gearshift.pop(conn, None)
                await conn.close()

    async def _register(self, conn: AsyncConnection) -> None:
        packets = []
        if self.exceptions is None:  # "auto": ask before any job can fail (see module doc)
            self._gearshift[conn] = None
            packets.append(encode_request(P.OPTION_REQ, GEARSHIFT_OPTION))
        if self.client_id:
            packets.append(encode_request(P.SET_CLIENT_ID, self.client_id.encode()))
        packets += [reg.packet() for reg in self._functions.values()]
        await conn.send(b"".join(packets))
        self._registered[conn.address] = self._registered.get(conn.address, 0) + 1

    async def _work(self, conn: AsyncConnection, stop_when_idle: bool) -> bool:
        """Grab and run jobs on one connection; True when this slot is finished for good."""
        while not self._stopping.is_set():
            if not self._claim():
                return True
            await conn.send(encode_request(P.GRAB_JOB_ALL))
            packet = await self._reply(conn)
            if packet[0] in _ASSIGN:
                await self._execute(conn, AsyncJob(conn, packet))
                continue
            self._claimed -= 1  # NO_JOB: nothing to run
            if stop_when_idle:
                return True
            await self._sleep(conn)
        return True

    async def _reply(self, conn: AsyncConnection) -> Packet:
        """The answer to GRAB_JOB_ALL, handling anything else on the way (stray NOOPs,
        the probe's answer, ERRORs) in :meth:`_aside` -- off the common path."""
        while True:
            packet = await conn.read_packet(None)
            if packet[0] in _ASSIGN or packet[0] == P.NO_JOB:
                return packet
            self._aside(conn, packet)

    def _aside(self, conn: AsyncConnection, packet: Packet) -> None:
        """A packet that is not the awaited reply.

        OPTION_RES answers the "auto" probe. ERROR UNKNOWN_OPTION answers it too while it
        is unanswered (the worker sends no other OPTION_REQ): that is gearmand's normal
        answer, not worth a warning. Other ERRORs are logged (e.g. JOB_NOT_FOUND for a
        WORK_* sent after the server requeued a timed-out job); NOOPs are dropped.
        WORK_FAIL HANDLE is a gearshift server cancelling a running job (it sends that
        only to connections that sent ``OPTION_REQ gearshift``): the job is stopped.
        """
        ptype, fields = packet
        if ptype == P.WORK_FAIL:  # a gearshift server cancelled a job: stop it
            for job in list(self._running):
                if job._conn is conn and job.handle == fields[0]:
                    job._ended_by_server = True
                    job._control.cancel(CANCELLED_BY_SERVER)
        elif ptype == P.OPTION_RES and fields[0] == GEARSHIFT_OPTION:
            if conn in self._gearshift:
                self._gearshift[conn] = True
        elif ptype == P.ERROR:
            if fields[0] == ErrorCode.UNKNOWN_OPTION and self._gearshift.get(conn, 0) is None:
                self._gearshift[conn] = False
                log.debug("server %s is not gearshift: failures go as WORK_FAIL",
                          conn.address)
            else:
                log.warning("server %s: ERROR %r", conn.address, fields)

    async def _sleep(self, conn: AsyncConnection) -> None:
        await conn.send(encode_request(P.PRE_SLEEP))
        self._sleeping.add(conn)
        try:
            if self._stopping.is_set():
                raise ConnectionLost("stopping")
            while (packet := await conn.read_packet(None))[0] != P.NOOP:
                self._aside(conn, packet)
        finally:
            self._sleeping.discard(conn)

    def _claim(self) -> bool:
        if self._max_jobs is not None and self._claimed >= self._max_jobs:
            self.stop()
            return False
        self._claimed += 1
        return True

    async def _execute(self, conn: AsyncConnection, job: AsyncJob) -> None:
        registration = self._functions.get(job.function)
        self._running.add(job)
        if self._before_job is not None:
            self._before_job(job)
        watch = None
        if self._gearshift.get(conn) is True:  # it may tell us to stop (see _aside)
            watch = AsyncWatch(conn, functools.partial(self._aside, conn), WATCH_AFTER)
        try:
            if registration is None:
                raise LookupError(f"no handler for {job.function!r}")
            result = to_bytes(await run_stoppable(job._control, registration.timeout,
                                                  registration.handler, job))
            if job.cancelled is not None:  # it returned anyway: its result is too late
                raise JobCancelled(job.cancelled)
            if job._partitions is not None:
                result = await self._reduce(job, registration, result)
        except (Exception, JobCancelled) as exc:  # a job's failure must never stop the worker
            if self._abandoning:  # stop now: leave the job to the server, unreported
                raise ConnectionLost("stopping now") from None
            if job._ended_by_server:  # cancelled: its clients were told already
                self.jobs_failed += 1
                log.warning("job %s (%s) stopped: cancelled",
                            job.handle.decode(errors="replace"),
                            job.function.decode(errors="replace"))
                return
            # Whatever the stopped work raised (a killed command's exit), this is why.
            why = exc if job.cancelled is None else JobCancelled(job.cancelled)
            self.jobs_failed += 1
            await self._report_failure(conn, job, why)
        else:
            await conn.send(encode_request(P.WORK_COMPLETE, job.handle, result))
        finally:
            if watch is not None:
                await watch.stop()
            self._running.discard(job)
        self.jobs_done += 1
        if self._after_job is not None:
            self._after_job(self)

    async def _reduce(self, job: AsyncJob, registration: _Registration,
                      last: bytes) -> bytes:
        """Run the reducer over a map job's partitions; its aggregated result."""
        parts = list(job._partitions or ())
        if last:
            parts.append(last)
        reducer = job.reducer.decode("utf-8", "replace")
        results: list[bytes] = []
        if parts:
            async with AsyncClient(self.servers, ssl=self._ssl) as client:
                tasks = client.task_set()
                for part in parts:
                    tasks.add(job.reducer, part)
                try:
                    results = await tasks.results()
                except GearmanError as exc:
                    raise ReduceFailed(f"reducer {reducer} failed: {exc}") from exc
        aggregate = registration.aggregator
        return to_bytes(aggregate(results) if aggregate is not None else b"".join(results))

    async def _report_failure(self, conn: AsyncConnection, job: AsyncJob,
                              exc: BaseException) -> None:
        """Log the failure where operators look (WARNING, traceback) and tell the server:
        WORK_EXCEPTION with the reason when this connection may, else bare WORK_FAIL."""
        reason = failure_reason(exc)
        stopped = isinstance(exc, JobCancelled)  # a timeout: no traceback to show
        log.warning("job %s (%s) %s %s", job.handle.decode(errors="replace"),
                    job.function.decode(errors="replace"),
                    "stopped:" if stopped else "raised", reason.decode(errors="replace"),
                    exc_info=None if stopped else exc)
        send_reason = self.exceptions
        if send_reason is None:
            send_reason = self._gearshift.get(conn) is True
        if send_reason:
            await conn.send(encode_request(P.WORK_EXCEPTION, job.handle, reason))
        else:
            await conn.send(encode_request(P.WORK_FAIL, job.handle))
