"""The client side of one server connection, without I/O: what to send, where replies go.

gearmand answers the requests of one connection in order, so every request that expects a
reply (SUBMIT_* -> JOB_CREATED, GET_STATUS -> STATUS_RES, OPTION_REQ -> OPTION_RES, ...)
takes a slot in a FIFO and the next reply -- or ERROR -- fills the oldest slot. WORK_*
packets are routed by job handle to every task waiting on that handle (coalesced
submissions share one handle).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gearshift.client._errors import ConnectionLost, GearmanError, ServerError
from gearshift.client._models import EventKind, JobEvent, Task, TaskState
from gearshift.protocol import Packet, PacketType, ProtocolError, encode_request

P = PacketType

_WORK_EVENTS: dict[int, EventKind] = {
    P.WORK_DATA: EventKind.DATA,
    P.WORK_WARNING: EventKind.WARNING,
    P.WORK_COMPLETE: EventKind.COMPLETE,
    P.WORK_EXCEPTION: EventKind.EXCEPTION,
}


@dataclass(slots=True)
class Reply:
    """A slot for a non-submit request's answer (status, echo, option)."""

    expect: PacketType
    fields: list[bytes] | None = None
    error: GearmanError | None = None
    done: bool = field(default=False)

    def value(self) -> list[bytes]:
        if self.error is not None:
            raise self.error
        assert self.fields is not None
        return self.fields


class ClientProtocol:
    """Per-connection router for a client. Feed it packets; it updates tasks and replies."""

    def __init__(self) -> None:
        self._slots: deque[Task | Reply] = deque()
        self._by_handle: dict[bytes, list[Task]] = {}

    @property
    def waiting(self) -> int:
        """Requests and foreground jobs that still expect packets on this connection."""
        return len(self._slots) + len(self._by_handle)

    def submit(self, task: Task) -> bytes:
        """Bytes to send for ``task``; it now waits for JOB_CREATED."""
        kind, fields = task.packet
        task.state = TaskState.SENT
        self._slots.append(task)
        return encode_request(kind, *fields)

    def request(self, kind: PacketType, expect: PacketType, *fields: bytes) -> tuple[bytes, Reply]:
        """Bytes for a request answered by one ``expect`` packet, and the slot to read it."""
        reply = Reply(expect)
        self._slots.append(reply)
        return encode_request(kind, *fields), reply

    def receive(self, packet: Packet) -> None:
        """Route one packet from the server.

        Raises:
            ProtocolError: a reply arrived that no request asked for.
        """
        ptype, fields = packet
        if ptype == P.JOB_CREATED:
            slot = self._pop(ptype)
            if not isinstance(slot, Task):
                raise ProtocolError(b"INVALID_COMMAND", "JOB_CREATED answered a non-submit")
            slot.created(fields[0])
            if not slot.done:
                self._by_handle.setdefault(fields[0], []).append(slot)
        elif ptype == P.ERROR:
            error = ServerError(fields[0], fields[1])
            slot = self._pop(ptype)
            if isinstance(slot, Task):
                slot.finish(error=error)
            else:
                slot.error, slot.done = error, True
        elif ptype in _WORK_EVENTS:
            self._work(fields[0], JobEvent(_WORK_EVENTS[ptype], fields[1]))
        elif ptype == P.WORK_FAIL:
            # A converted WORK_EXCEPTION arrives as "HANDLE\0" (gearmand.md 2.10).
            self._work(fields[0].rstrip(b"\0"), JobEvent(EventKind.FAIL))
        elif ptype == P.WORK_STATUS:
            self._work(fields[0], JobEvent(EventKind.STATUS, b"", _int(fields[1]),
                                           _int(fields[2])))
        elif ptype == P.NOOP:
            return
        else:
            slot = self._pop(ptype)
            if isinstance(slot, Task) or slot.expect != ptype:
                raise ProtocolError(b"INVALID_COMMAND", f"unexpected {P(ptype).name} reply")
            slot.fields, slot.done = fields, True

    def connection_lost(self) -> list[Task]:
        """Fail everything that can no longer be answered; return tasks to resubmit.

        Tasks still waiting for JOB_CREATED were never accepted, so the caller may send
        them to another server. Created foreground tasks fail with ConnectionLost.
        """
        resubmit: list[Task] = []
        while self._slots:
            slot = self._slots.popleft()
            if isinstance(slot, Task):
                slot.state = TaskState.NEW
                resubmit.append(slot)
            else:
                slot.error, slot.done = ConnectionLost("connection closed before the reply"), True
        for tasks in self._by_handle.values():
            for task in tasks:
                task.finish(error=ConnectionLost(
                    f"connection lost while job {task.handle!r} was running"))
        self._by_handle.clear()
        return resubmit

    def _pop(self, ptype: int) -> Task | Reply:
        if not self._slots:
            raise ProtocolError(b"INVALID_COMMAND", f"unsolicited {P(ptype).name} packet")
        return self._slots.popleft()

    def _work(self, handle: bytes, event: JobEvent) -> None:
        tasks = self._by_handle.get(handle)
        if not tasks:
            return  # a job we stopped waiting for (timeout, cancelled wait)
        for task in list(tasks):
            task.apply(event)
        if event.kind in (EventKind.COMPLETE, EventKind.FAIL, EventKind.EXCEPTION):
            del self._by_handle[handle]


def _int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
