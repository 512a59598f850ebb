"""asyncio implementations of the stream, lock, event and task-running primitives."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from ssl import SSLContext
from typing import Any

from gearshift.client._cancel import Cancellation, JobCancelled, timeout_reason
from gearshift.client._errors import GearmanTimeout

READ_SIZE = 256 * 1024


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (monotonic); raises GearmanTimeout when none are."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise GearmanTimeout("timed out")
    return left


class AsyncStream:
    """One TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, deadline: float | None) -> bytes:
        """Some bytes, or b"" at end of stream."""
        try:
            return await asyncio.wait_for(self._reader.read(READ_SIZE), remaining(deadline))
        except TimeoutError as exc:
            raise GearmanTimeout("timed out waiting for the server") from exc

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    def abort(self) -> None:
        """Close at once, waking any reader (used to stop a sleeping worker)."""
        self._writer.transport.abort()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)


async def open_stream(host: str, port: int, deadline: float | None,
                      tls: SSLContext | None = None) -> AsyncStream:
    """Connect (and with ``tls``, complete the TLS handshake) before ``deadline``."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=tls,
                                    server_hostname=host if tls is not None else None),
            remaining(deadline))
    except TimeoutError as exc:
        raise GearmanTimeout(f"timed out connecting to {host}:{port}") from exc
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return AsyncStream(reader, writer)


async def read_any(streams: Sequence[AsyncStream],
                   deadline: float | None) -> list[tuple[int, bytes | OSError]]:
    """Wait until at least one stream has bytes (or closed); return (index, data|error)."""
    if len(streams) == 1:
        try:
            return [(0, await streams[0].read(deadline))]
        except GearmanTimeout:
            raise
        except OSError as exc:
            return [(0, exc)]
    tasks = [asyncio.ensure_future(s.read(None)) for s in streams]
    try:
        await asyncio.wait(tasks, timeout=remaining(deadline),
                                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    out: list[tuple[int, bytes | OSError]] = []
    for i, task in enumerate(tasks):
        if task.cancelled():
            continue
        error = task.exception()
        if isinstance(error, OSError):
            out.append((i, error))
        elif error is not None:
            raise error
        else:
            out.append((i, task.result()))
    if not out:
        raise GearmanTimeout("timed out waiting for the servers")
    return out


class AsyncLock:
    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def acquire(self, deadline: float | None) -> None:
        try:
            await asyncio.wait_for(self._lock.acquire(), remaining(deadline))
        except TimeoutError as exc:
            raise GearmanTimeout("timed out waiting for the connection") from exc

    def release(self) -> None:
        self._lock.release()


class AsyncEvent:
    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        """True when set, False when ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def sleep(seconds: float) -> None:
    """Pause this task (polling loops such as ``result(wait=...)``)."""
    await asyncio.sleep(seconds)


async def run_all(jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run the jobs concurrently (one task each) until all return."""
    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(job())  # type: ignore[arg-type]


async def call_handler(handler: Callable[..., object], *args: object) -> object:
    """Call a job function; coroutine functions are awaited on this loop."""
    result = handler(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def run_stoppable(control: Cancellation, time_limit: float | None,
                        handler: Callable[..., object], *args: object) -> object:
    """Call a job function that ``control`` can stop, and stop it after ``time_limit`` s.

    The function runs in a task of its own, so that stopping it (cancelling that task)
    never leaves a cancellation pending on the worker's connection task. A plain
    (non-async) function blocks the loop and cannot be interrupted until it returns.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(call_handler(handler, *args))
    control.set_interrupt(task.cancel)
    timer = None
    if time_limit is not None:
        timer = loop.call_later(time_limit, control.cancel, timeout_reason(time_limit))
    try:
        return await task
    except asyncio.CancelledError:
        if control.reason is None or not task.cancelled():
            raise  # the worker itself is being cancelled
        raise JobCancelled(control.reason) from None
    finally:
        control.finish()
        if timer is not None:
            timer.cancel()


class AsyncWatch:
    """Reads a worker's connection while its job runs, handing each packet to
    ``on_packet`` (a server's "stop this job"). Starts only after ``after`` seconds, so a
    short job costs a timer and nothing else."""

    def __init__(self, conn: Any, on_packet: Callable[[Any], object], after: float) -> None:
        self._conn = conn
        self._on_packet = on_packet
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(after, self._start)

    def _start(self) -> None:
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            self._on_packet(await self._conn.read_packet(None))

    async def stop(self) -> None:
        """Stop reading; the connection is the worker's again. (A read cut short loses
        nothing: bytes are parsed as soon as they are received.)"""
        self._timer.cancel()
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # never raises: a lost connection shows up later


def add_stop_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM/SIGINT; returns a function that restores the old state."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, callback)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def restore() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return restore
