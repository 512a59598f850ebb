"""AsyncAdminClient: gearmand's text admin commands, answered as dataclasses.

gearshift's own commands (job outcomes, dead letters, schedules) answer JSON, one object
per line; they are read into :class:`JobOutcome` and :class:`Schedule`.

One connection to one server. Commands are sent with ``\\r\\n`` (gearmand's
``create function`` assumes CRLF and cuts a character off a bare ``\\n`` line) and replies
are read line by line with the shared codec, which returns admin text lines as
``(TEXT, [line])`` packets.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from ssl import SSLContext
from types import TracebackType
from typing import Any, Self, TypeVar

from gearshift.client import _admin_lines as lines
from gearshift.client._backends.asyncio_ import AsyncStream, open_stream
from gearshift.client._errors import (
    AdminError,
    ConnectionFailed,
    ConnectionLost,
    GearmanError,
    GearmanTimeout,
    UnknownJob,
)
from gearshift.client._models import ClusterServer, FunctionLimits, JobOutcome, Priority, Schedule
from gearshift.client._servers import Address, parse_servers
from gearshift.client._tls import TlsChoice
from gearshift.protocol import RES, PacketReader, ProtocolError
from gearshift.protocol._admin import (
    END,
    FunctionStatus,
    JobInfo,
    PriorityStatus,
    WorkerInfo,
    parse_err,
    parse_jobs,
    parse_ok,
    parse_priority_status,
    parse_status,
    parse_unique_jobs,
    parse_workers,
)

R = TypeVar("R")


class AsyncAdminClient:
    """Admin commands for one server (``host:port``; None reads ``GEARMAN_SERVER(S)``
    and uses the first entry).

    Every method raises :class:`AdminError` on an ``ERR`` reply, GearmanTimeout after
    ``timeout`` seconds, and ConnectionFailed/ConnectionLost on socket trouble.
    ``ssl``: connect with TLS, as for the client (an ``ssl.SSLContext`` or True).
    """

    def __init__(self, server: str | Address | None = None, *, timeout: float = 10.0,
                 ssl: SSLContext | bool | None = None) -> None:
        self.address = parse_servers(None if server is None else [server])[0]
        self.timeout = timeout
        self._tls = TlsChoice(ssl, [self.address])(self.address)
        self._stream: AsyncStream | None = None
        self._parser = PacketReader(expect=RES, allow_text=True)
        self._lines: deque[bytes] = deque()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._parser = PacketReader(expect=RES, allow_text=True)
            self._lines.clear()
            await stream.close()

    # ------------------------------------------------------------------ commands

    async def status(self) -> list[FunctionStatus]:
        return parse_status(await self.listing("status"))

    async def priority_status(self) -> list[PriorityStatus]:
        return parse_priority_status(await self.listing("prioritystatus"))

    async def workers(self) -> list[WorkerInfo]:
        return parse_workers(await self.listing("workers"))

    async def show_jobs(self) -> list[JobInfo]:
        return parse_jobs(await self.listing("show jobs"))

    async def show_unique_jobs(self) -> list[str]:
        return parse_unique_jobs(await self.listing("show unique jobs"))

    async def cancel_job(self, handle: str | bytes) -> None:
        """End a queued or running job (the handle as ``submit_background`` returned it,
        or as ``show jobs`` lists it)."""
        if isinstance(handle, bytes):
            handle = handle.decode("utf-8", "replace")
        await self.command(f"cancel job {handle}")

    async def create_function(self, name: str) -> None:
        await self.command(f"create function {name}")

    async def drop_function(self, name: str) -> None:
        await self.command(f"drop function {name}")

    async def maxqueue(self, function: str, high: int | None = None, normal: int | None = None,
                       low: int | None = None) -> None:
        """Limit queued jobs of ``function``: one value for every priority (``high`` only)
        or all three; no value clears the limit."""
        values = [v for v in (high, normal, low) if v is not None]
        if len(values) not in (0, 1, 3):
            raise ValueError("maxqueue takes no limit, one limit, or high, normal and low")
        await self.command(" ".join(["maxqueue", function, *map(str, values)]))

    async def version(self) -> str:
        return await self.command("version")

    async def getpid(self) -> int:
        return int(await self.command("getpid"))

    async def verbose(self) -> str:
        return await self.command("verbose")

    # ------------------------------------ gearshift: outcomes, dead letters, schedules

    async def result(self, handle: str | bytes) -> JobOutcome:
        """A background job's state, or its outcome once it ended (``result HANDLE``).

        Raises UnknownJob if the server never had the handle or its outcome expired."""
        return self._record(JobOutcome.from_json,
                            await self.command(f"result {lines.handle_word(handle)}"))

    async def dead(self, function: str | bytes | None = None) -> list[JobOutcome]:
        """Dead letters (of ``function``, or all), oldest first."""
        line = "dead" if function is None else f"dead {lines.word('function', function)}"
        return [self._record(JobOutcome.from_json, raw.decode("utf-8", "replace"))
                for raw in await self.listing(line)]

    async def retry_dead(self, handle: str | bytes | None = None, *, all: bool = False,
                         function: str | bytes | None = None) -> int:
        """Queue dead letters again (one handle, ``all=True`` or every one of
        ``function``) under their own handles; returns how many. UnknownJob when a
        single handle is not a dead letter."""
        return int(await self.command(f"retry dead {lines.dead_target(handle, all, function)}"))

    async def purge_dead(self, handle: str | bytes | None = None, *, all: bool = False,
                         function: str | bytes | None = None) -> int:
        """Forget dead letters for good (chosen as in :meth:`retry_dead`); returns how many."""
        return int(await self.command(f"purge dead {lines.dead_target(handle, all, function)}"))

    async def schedules(self) -> list[Schedule]:
        return [self._record(Schedule.from_json, raw.decode("utf-8", "replace"))
                for raw in await self.listing("schedules")]

    async def cluster(self) -> list[ClusterServer]:
        """The servers sharing the server's store and their leases (empty when its store
        is its own)."""
        return [self._record(ClusterServer.from_json, raw.decode("utf-8", "replace"))
                for raw in await self.listing("cluster")]

    async def add_schedule(self, function: str | bytes, cron: str, data: bytes = b"",
                           unique: str | bytes = "",
                           priority: Priority | str = "normal") -> str:
        """Submit a background job of ``function`` at every minute ``cron`` matches
        (``"MIN HOUR DOM MON DOW"``, 0 = Sunday); returns the schedule's key.

        Raises ValueError before any I/O for a cron without five fields or names with
        spaces, AdminError (``INVALID_ARGUMENTS``, the server's reason) for a bad cron."""
        return await self.command(lines.schedule_add(function, cron, data, unique, priority))

    async def remove_schedule(self, key: str) -> None:
        """Delete a schedule (AdminError ``UNKNOWN_SCHEDULE`` if there is none)."""
        await self.command(f"schedule rm {lines.word('schedule key', key)}")

    # ------------------------------------------------ gearshift: flow control

    async def pause(self, function: str | bytes) -> None:
        """Hand out none of ``function``'s jobs (they are still accepted and queued)."""
        await self.command(f"pause {lines.word('function', function)}")

    async def resume(self, function: str | bytes) -> None:
        """Undo :meth:`pause` (and a concurrency limit of 0)."""
        await self.command(f"resume {lines.word('function', function)}")

    async def set_limits(self, function: str | bytes, *, concurrency: int | str | None = None,
                         rate: str | None = None, weight: int | str | None = None) -> None:
        """Change ``function``'s limits at run time (kept in the store): ``concurrency``
        (jobs at once, ``"none"`` lifts it), ``rate`` (``"5/s"``, ``"100/m"``,
        ``"none"``), ``weight``; ``"-"`` goes back to the startup rule. AdminError
        ``INVALID_ARGUMENTS`` names a bad value."""
        words = [f"{name}={lines.word(name, str(value))}" for name, value in
                 (("concurrency", concurrency), ("rate", rate), ("weight", weight))
                 if value is not None]
        if not words:
            raise ValueError("give concurrency, rate or weight")
        await self.command(" ".join(["limit", lines.word("function", function), *words]))

    async def reset_limits(self, function: str | bytes) -> None:
        """Drop every run-time change of ``function``: the startup rules apply again."""
        await self.command(f"limit {lines.word('function', function)} reset")

    async def drain(self, on: bool = True) -> None:
        """Make the whole server refuse new submissions (``ERROR QUEUE_ERROR``) while it
        finishes the jobs it has; ``on=False`` accepts them again. Not persisted."""
        await self.command("drain" if on else "drain off")

    async def draining(self) -> bool:
        """Whether the server refuses new submissions (:meth:`drain`)."""
        return await self.command("drain status") == "on"

    async def limits(self) -> list[FunctionLimits]:
        """Functions with limits, pauses or weights, with their current usage."""
        return [self._record(FunctionLimits.from_json, raw.decode("utf-8", "replace"))
                for raw in await self.listing("limits")]

    def _record(self, factory: Callable[[Mapping[str, Any]], R], text: str) -> R:
        """One JSON object of a reply; a reply that is not one is the server's fault."""
        try:
            record = json.loads(text)
            return factory(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise GearmanError(f"{self.address} sent an unreadable record {text[:200]!r}: "
                               f"{exc!r}") from exc

    # ------------------------------------------------------------------- plumbing

    async def command(self, line: str) -> str:
        """Send one command answered by a single OK/ERR line; returns the OK value."""
        deadline = time.monotonic() + self.timeout
        await self._send(line)
        reply = await self._line(deadline)
        err = parse_err(reply)
        if err is not None:
            raise _error(err.code, err.text)
        return parse_ok(reply)

    async def listing(self, line: str) -> list[bytes]:
        """Send one command answered by lines ending with ``.``; returns those lines."""
        deadline = time.monotonic() + self.timeout
        await self._send(line)
        lines: list[bytes] = []
        while True:
            reply = await self._line(deadline)
            if not lines:
                err = parse_err(reply)
                if err is not None:
                    raise _error(err.code, err.text)
            if reply == END:
                return lines
            lines.append(reply)

    async def _send(self, line: str) -> None:
        if "\n" in line or "\r" in line:
            raise ValueError("admin commands are single lines")
        if self._stream is None:
            try:
                self._stream = await open_stream(self.address.host, self.address.port,
                                                 time.monotonic() + self.timeout, self._tls)
            except OSError as exc:
                raise ConnectionFailed(f"cannot connect to {self.address}: {exc}") from exc
        try:
            await self._stream.write(line.encode() + b"\r\n")
        except OSError as exc:
            raise ConnectionLost(f"{self.address}: {exc}") from exc

    async def _line(self, deadline: float) -> bytes:
        while not self._lines:
            assert self._stream is not None
            try:
                data = await self._stream.read(deadline)
            except GearmanTimeout:
                await self.aclose()  # a late reply would answer the next command
                raise
            except OSError as exc:
                raise ConnectionLost(f"{self.address}: {exc}") from exc
            if not data:
                raise ConnectionLost(f"{self.address} closed the admin connection")
            try:
                self._lines.extend(fields[0] for _, fields in self._parser.feed(data))
            except ProtocolError as exc:
                raise ConnectionLost(f"{self.address} sent a binary packet: {exc}") from exc
        return self._lines.popleft()


def _error(code: str, text: str) -> AdminError:
    return UnknownJob(text) if code == "UNKNOWN_JOB" else AdminError(code, text)
