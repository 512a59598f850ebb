"""AsyncClient: submit jobs (wait, many in parallel, background) to one or more servers.

How waiting works: nothing reads the sockets in the background. Whoever waits (a
``submit``, a task set, a status call) takes the client's I/O lock, reads one round of
packets from every connection that still expects some, routes them to their tasks through
:class:`ClientProtocol`, releases the lock and checks its own condition again. The same
loop therefore runs unchanged with blocking sockets in the generated sync client, and a
timed-out or cancelled wait leaves the connection consistent (late replies are routed to
tasks nobody waits for any more).

Failover: a job goes to the server its unique key hashes to (consistent hashing, see
:class:`~gearshift.client._servers.Selector`), or round-robin without one;
if that server refuses the connection or drops it before JOB_CREATED, the job is sent to
the next server. Servers that failed are skipped for a backoff period (tried last).
"""

# ruff: noqa: ASYNC109 -- explicit timeouts: the same code runs as the blocking client
from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from ssl import SSLContext
from types import TracebackType
from typing import Any, Self

from gearshift.client._backends.asyncio_ import AsyncLock, read_any
from gearshift.client._errors import (
    ConnectionFailed,
    ConnectionLost,
    GearmanError,
    GearmanTimeout,
)
from gearshift.client._models import (
    DoneCallback,
    EventCallback,
    EventKind,
    JobEvent,
    JobOutcome,
    JobStatus,
    Priority,
    Task,
    TaskState,
    UniqueStatus,
)
from gearshift.client._payload import Codec, get_codec, to_bytes
from gearshift.client._protocol import ClientProtocol, Reply
from gearshift.client._servers import Address, Backoff, Selector, parse_servers
from gearshift.client._tls import TlsChoice
from gearshift.protocol import PacketType as P
from gearshift.protocol import ProtocolError

from ._connection import AsyncConnection
from ._results import read_outcome

#: Longest single read while other waiters may need the lock; bounds how late a
#: concurrent waiter notices a connection opened after this read started.
READ_SLICE = 0.1

#: Background handles whose server the client remembers (for :meth:`AsyncClient.result`).
ORIGINS_KEPT = 10_000
#: Seconds an admin reply may take in ``result`` when neither it nor the client has a timeout.
ADMIN_TIMEOUT = 10.0

When = float | int | dt.datetime


class AsyncServerLink:
    """The client's state for one server: connection (when open), router, backoff."""

    def __init__(self, address: Address) -> None:
        self.address = address
        self.backoff = Backoff()
        self.conn: AsyncConnection | None = None
        self.protocol = ClientProtocol()
        #: held while connecting, so concurrent submitters share one new connection
        self.connecting = AsyncLock()
        #: held from taking a reply slot until the request is written, so requests reach
        #: the socket in slot order even when several threads submit (blocking client)
        self.sending = AsyncLock()

    async def request(self, conn: AsyncConnection, kind: P, expect: P,
                      arg: bytes) -> Reply:
        """Send a request answered by one packet; returns its reply slot."""
        await self.sending.acquire(None)
        try:
            data, reply = self.protocol.request(kind, expect, arg)
            await conn.send(data)
        finally:
            self.sending.release()
        return reply

    async def submit(self, conn: AsyncConnection, task: Task) -> None:
        await self.sending.acquire(None)
        try:
            await conn.send(self.protocol.submit(task))
        finally:
            self.sending.release()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address} {'up' if self.conn else 'closed'}>"


class AsyncClient:
    """Submit jobs to Gearman servers.

    Args:
        servers: ``["host:port", ...]``, a comma-separated string, or None to read
            ``GEARMAN_SERVERS`` (default ``localhost:4730``).
        exceptions: ask servers to forward WORK_EXCEPTION (raised as JobException);
            without it a job that raised arrives as a plain WORK_FAIL (JobFailed).
        timeout: default for every wait, in seconds (None: wait as long as it takes).
        connect_timeout: per connection attempt (TLS handshake included).
        ssl: connect with TLS: an ``ssl.SSLContext``, or True for one built like
            libgearman's (``$GEARMAND_CA_CERTIFICATE``, ``$GEARMAN_CLIENT_PEM``,
            ``$GEARMAN_CLIENT_KEY``; see :func:`gearshift.client.tls_context`).
    """

    def __init__(self, servers: str | Sequence[str | Address] | None = None, *,
                 exceptions: bool = True, timeout: float | None = None,
                 connect_timeout: float = 5.0, ssl: SSLContext | bool | None = None) -> None:
        addresses = parse_servers(servers)
        self._links = [AsyncServerLink(a) for a in addresses]
        self._selector = Selector(addresses)
        self._io = AsyncLock()
        self.exceptions = exceptions
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._tls = TlsChoice(ssl, self.servers)
        #: background handle -> the server that issued it, newest last
        self._origins: OrderedDict[bytes, Address] = OrderedDict()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {', '.join(str(link.address) for link in self._links)}>"

    @property
    def servers(self) -> list[Address]:
        return [link.address for link in self._links]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every connection (jobs already queued on the servers keep running)."""
        for link in self._links:
            if link.conn is not None:
                await link.conn.close()
                link.conn = None
                link.protocol.connection_lost()

    # ---------------------------------------------------------------- submitting

    def task(self, function: str | bytes, data: Any = b"", *, unique: str | bytes | None = None,
             priority: Priority = Priority.NORMAL, background: bool = False,
             when: When | None = None, reducer: str | bytes | None = None,
             on_event: EventCallback | None = None,
             on_done: DoneCallback | None = None) -> Task:
        """Build a :class:`Task` (no I/O). Background jobs without a unique key get a UUID,
        as libgearman does, so persistent queues keyed by unique never merge them."""
        given = to_bytes(unique) if unique is not None else b""
        key = given or (uuid.uuid4().hex.encode() if background else b"")
        task = Task(to_bytes(function), to_bytes(data), key, priority=priority,
                    background=background, when=_epoch(when),
                    reducer=None if reducer is None else to_bytes(reducer),
                    on_event=on_event, on_done=on_done)
        task.route_by_unique = bool(given)
        return task

    async def submit(self, function: str | bytes, data: Any = b"", *,
                     unique: str | bytes | None = None, priority: Priority = Priority.NORMAL,
                     timeout: float | None = None) -> bytes:
        """Run a job and wait for its result.

        Raises:
            JobFailed / JobException: the worker failed or raised.
            ServerError: the server refused the job (e.g. queue full).
            ConnectionFailed: no server accepted it; ConnectionLost: its server went away.
            GearmanTimeout: no outcome within ``timeout`` seconds.
        """
        task = self.task(function, data, unique=unique, priority=priority)
        await self.run([task], timeout)
        return task.outcome()

    async def submit_background(self, function: str | bytes, data: Any = b"", *,
                                unique: str | bytes | None = None,
                                priority: Priority = Priority.NORMAL, when: When | None = None,
                                timeout: float | None = None) -> bytes:
        """Queue a job and return its handle as soon as the server has it.

        ``when`` (a datetime or UNIX time) sends SUBMIT_JOB_EPOCH: the job runs at or after
        that time (normal priority only, as the protocol defines it).
        """
        task = self.task(function, data, unique=unique, priority=priority, background=True,
                         when=when)
        await self.run([task], timeout)
        return task.outcome()

    async def submit_reduce(self, function: str | bytes, data: Any, reducer: str | bytes, *,
                            unique: str | bytes | None = None, background: bool = False,
                            timeout: float | None = None) -> bytes:
        """SUBMIT_REDUCE_JOB(_BACKGROUND): a map/reduce job; returns the result (or handle)."""
        task = self.task(function, data, unique=unique, background=background, reducer=reducer)
        await self.run([task], timeout)
        return task.outcome()

    async def call(self, function: str | bytes, payload: Any = None, *,
                   codec: str | Codec = "json", unique: str | bytes | None = None,
                   priority: Priority = Priority.NORMAL, timeout: float | None = None) -> Any:
        """Python-to-Python call: encode ``payload``, run the job, decode the result."""
        chosen = get_codec(codec)
        result = await self.submit(function, chosen.encode(payload), unique=unique,
                                   priority=priority, timeout=timeout)
        return chosen.decode(result)

    async def stream(self, function: str | bytes, data: Any = b"", *,
                     unique: str | bytes | None = None, priority: Priority = Priority.NORMAL,
                     timeout: float | None = None) -> AsyncIterator[JobEvent]:
        """Run a job and yield its WORK_DATA/WARNING/STATUS events as they arrive, then a
        final COMPLETE event; a failed job raises after the events that preceded it."""
        task = self.task(function, data, unique=unique, priority=priority)
        deadline = self._deadline(timeout)
        await self._send(task, set())
        while True:
            while task.events:
                yield task.events.popleft()
            if task.done:
                break
            await self._pump(deadline, lambda: bool(task.events) or task.done)
        yield JobEvent(EventKind.COMPLETE, task.outcome())

    def task_set(self) -> AsyncTaskSet:
        """A set of jobs submitted together and collected as they finish."""
        return AsyncTaskSet(self)

    async def run(self, tasks: Sequence[Task], timeout: float | None = None) -> None:
        """Send every new task (pipelined) and wait until all are done (not raising)."""
        deadline = self._deadline(timeout)
        for task in tasks:
            if task.state is TaskState.NEW:
                await self._send(task, set())
        try:
            await self._wait(lambda: all(t.done for t in tasks), deadline)
        finally:
            self._remember(tasks)

    # ------------------------------------------------------------------- status

    async def status(self, handle: str | bytes, timeout: float | None = None) -> JobStatus:
        """GET_STATUS on each server until one knows the handle."""
        handle = to_bytes(handle)
        fields = await self._ask_each(self._links, P.GET_STATUS, P.STATUS_RES, handle, timeout)
        return JobStatus(fields[0], fields[1] == b"1", fields[2] == b"1", _int(fields[3]),
                         _int(fields[4]))

    async def status_unique(self, unique: str | bytes,
                            timeout: float | None = None) -> UniqueStatus:
        """GET_STATUS_UNIQUE, asking the server the key hashes to first."""
        unique = to_bytes(unique)
        links = [self._links[i] for i in self._selector.order(unique)]
        fields = await self._ask_each(links, P.GET_STATUS_UNIQUE, P.STATUS_RES_UNIQUE, unique,
                                      timeout)
        return UniqueStatus(fields[0], fields[1] == b"1", fields[2] == b"1", _int(fields[3]),
                            _int(fields[4]), _int(fields[5]))

    async def result(self, handle: str | bytes, wait: float | None = None,
                     timeout: float | None = None) -> JobOutcome:
        """How a background job went: its result or failure once it ended, else its
        current state (gearshift servers keep outcomes for ``--keep-results``).

        ``wait`` (seconds) polls until the job ended or the time is up, then returns
        the outcome as it is (check ``.done``). The server that issued the handle is
        asked when this client submitted the job, else every server in turn.
        ``timeout`` bounds each admin reply (default: the client's, else 10 s).

        Raises:
            UnknownJob: no server knows the handle (never existed, or expired).
            ConnectionFailed: no server could be asked.
        """
        origin = self._origins.get(to_bytes(handle))
        servers = [origin] if origin is not None else self.servers
        timeout = timeout if timeout is not None else self.timeout
        return await read_outcome(servers, handle, wait,
                                  ADMIN_TIMEOUT if timeout is None else timeout, self._tls)

    async def echo(self, data: Any = b"ping", timeout: float | None = None) -> bytes:
        """ECHO_REQ to the first server; returns the echoed bytes."""
        return (await self._ask(self._links[0], P.ECHO_REQ, P.ECHO_RES, to_bytes(data),
                                timeout))[0]

    # ----------------------------------------------------------------- internals

    def _remember(self, tasks: Iterable[Task]) -> None:
        """Note which server gave each background handle, so ``result`` asks that one."""
        for task in tasks:
            if task.background and task.handle is not None and task.server is not None:
                self._origins[task.handle] = task.server
        while len(self._origins) > ORIGINS_KEPT:
            self._origins.popitem(last=False)

    def _deadline(self, timeout: float | None) -> float | None:
        timeout = self.timeout if timeout is None else timeout
        return None if timeout is None else time.monotonic() + timeout

    async def _connect(self, link: AsyncServerLink) -> AsyncConnection:
        if link.conn is not None:
            return link.conn
        await link.connecting.acquire(time.monotonic() + self.connect_timeout)
        try:
            if link.conn is None:
                conn = await AsyncConnection.open(link.address, self.connect_timeout,
                                                  self._tls(link.address))
                protocol = ClientProtocol()
                if self.exceptions:
                    data, _ = protocol.request(P.OPTION_REQ, P.OPTION_RES, b"exceptions")
                    await conn.send(data)
                # Protocol first: another thread that sees ``conn`` set submits through
                # ``link.protocol`` at once, and must not reach the old one's slots.
                link.protocol = protocol
                link.conn = conn
                link.backoff.succeeded()
            return link.conn
        finally:
            link.connecting.release()

    async def _ask_each(self, links: Sequence[AsyncServerLink], kind: P, expect: P, arg: bytes,
                        timeout: float | None) -> list[bytes]:
        """Ask each reachable server in turn until one answers "known" (field 1 is "1");
        unreachable servers are skipped, and only if none answered is that an error."""
        answer: list[bytes] | None = None
        error: GearmanError | None = None
        for link in links:
            try:
                answer = await self._ask(link, kind, expect, arg, timeout)
            except (ConnectionFailed, ConnectionLost) as exc:
                error = exc
                continue
            if answer[1] == b"1":
                break
        if answer is None:
            raise ConnectionFailed(f"no server answered: {error}")
        return answer

    async def _ask(self, link: AsyncServerLink, kind: P, expect: P, arg: bytes,
                   timeout: float | None) -> list[bytes]:
        deadline = self._deadline(timeout)
        try:
            conn = await self._connect(link)
            reply = await link.request(conn, kind, expect, arg)
        except (ConnectionFailed, ConnectionLost):
            await self._drop(link)
            raise
        await self._wait(lambda: reply.done, deadline)
        return reply.value()

    async def _send(self, task: Task, skip: set[AsyncServerLink]) -> None:
        """Send ``task`` to its first reachable server, failing over down the list."""
        now = time.monotonic()
        order = self._selector.order(task.unique if task.route_by_unique else None)
        candidates = [self._links[i] for i in order if self._links[i] not in skip]
        candidates.sort(key=lambda link: link.backoff.is_down(now))  # stable: down ones last
        error: GearmanError | None = None
        for link in candidates:
            try:
                conn = await self._connect(link)
                task.server = link.address
                await link.submit(conn, task)
                return
            except (ConnectionFailed, ConnectionLost, GearmanTimeout) as exc:
                error = exc
                skip.add(link)
                await self._drop(link, skip, keep=task)
        task.finish(error=ConnectionFailed(f"no server accepted the job: {error}"))

    async def _drop(self, link: AsyncServerLink, skip: set[AsyncServerLink] | None = None,
                    keep: Task | None = None) -> None:
        """Forget a failed connection; resubmit the jobs it had not acknowledged yet."""
        link.backoff.failed(time.monotonic())
        if link.conn is not None:
            conn, link.conn = link.conn, None
            conn.abort()
            await conn.close()
        orphans = link.protocol.connection_lost()
        for orphan in orphans:
            if orphan is not keep:
                await self._send(orphan, set(skip or ()) | {link})

    async def _wait(self, until: Callable[[], bool], deadline: float | None) -> None:
        while not until():
            await self._pump(deadline, until)

    async def _pump(self, deadline: float | None, until: Callable[[], bool]) -> None:
        """Read one round of packets (at most READ_SLICE long) and route them."""
        await self._io.acquire(deadline)
        try:
            if until():
                return
            links = [link for link in self._links
                     if link.conn is not None and link.protocol.waiting]
            if not links:
                raise GearmanError("waiting for a reply that no connection can deliver")
            now = time.monotonic()
            slice_end = now + READ_SLICE
            try:
                results = await read_any([link.conn.stream for link in links if link.conn],
                                         slice_end if deadline is None
                                         else min(deadline, slice_end))
            except GearmanTimeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                return
            for index, data in results:
                await self._deliver(links[index], data)
        finally:
            self._io.release()

    async def _deliver(self, link: AsyncServerLink, data: bytes | OSError) -> None:
        conn = link.conn
        if conn is None:
            return
        try:
            if isinstance(data, OSError):
                raise ConnectionLost(f"{link.address}: {data}") from data
            for packet in conn.feed(data):
                link.protocol.receive(packet)
        except (ConnectionLost, ProtocolError):
            await self._drop(link)


class AsyncTaskSet:
    """Many jobs at once: add them, then ``wait()`` for all or iterate ``as_completed()``.

    Every task is sent before any reply is awaited (the submissions are pipelined), and
    callbacks given to :meth:`add` run as each WORK_* packet arrives.
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self.tasks: list[Task] = []

    def __len__(self) -> int:
        return len(self.tasks)

    def add(self, function: str | bytes, data: Any = b"", *, unique: str | bytes | None = None,
            priority: Priority = Priority.NORMAL, background: bool = False,
            on_event: EventCallback | None = None,
            on_done: DoneCallback | None = None) -> Task:
        task = self._client.task(function, data, unique=unique, priority=priority,
                                 background=background, on_event=on_event, on_done=on_done)
        self.tasks.append(task)
        return task

    async def submit(self, timeout: float | None = None) -> list[Task]:
        """Send every unsent task (pipelined) and wait until each has a handle (or failed
        to get one); results are collected later with :meth:`wait` or :meth:`as_completed`."""
        client = self._client
        deadline = client._deadline(timeout)
        for task in self.tasks:
            if task.state is TaskState.NEW:
                await client._send(task, set())
        try:
            await client._wait(lambda: all(t.handle is not None or t.done
                                           for t in self.tasks), deadline)
        finally:
            client._remember(self.tasks)
        return self.tasks

    async def wait(self, timeout: float | None = None) -> list[Task]:
        """Submit what is unsent and wait for every task; check each ``task.error``."""
        await self._client.run(self.tasks, timeout)
        return self.tasks

    async def as_completed(self, timeout: float | None = None) -> AsyncIterator[Task]:
        """Submit what is unsent, then yield tasks in the order they finish."""
        client = self._client
        deadline = client._deadline(timeout)
        for task in self.tasks:
            if task.state is TaskState.NEW:
                await client._send(task, set())
        yielded: set[int] = set()
        while len(yielded) < len(self.tasks):
            for task in self.tasks:
                if task.done and id(task) not in yielded:
                    yielded.add(id(task))
                    client._remember([task])
                    yield task
            if len(yielded) < len(self.tasks):
                await client._wait(lambda: any(t.done and id(t) not in yielded
                                               for t in self.tasks), deadline)

    async def results(self, timeout: float | None = None) -> list[bytes]:
        """Results in submission order; raises the first task's error, if any."""
        await self.wait(timeout)
        return [task.outcome() for task in self.tasks]


def _epoch(when: When | None) -> int | None:
    if when is None:
        return None
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise ValueError("run-at datetime must be timezone-aware")
        return int(when.timestamp())
    return int(when)


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
