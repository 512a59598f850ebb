"""Parsing the replies of gearmand's text admin protocol into dataclasses (no I/O).

Reply shapes (gearmand ``libgearman-server/text.cc``, see reference/gearmand.md section 3):
single-line ``OK``, ``OK <value>`` or ``ERR <CODE> <text+with+pluses>``; listings are lines
ending with a line holding only ``.``. The server side formats these lines itself; this
module is what the admin client and ``gearshift admin`` read them with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

END = b"."


class AdminReplyError(ValueError):
    """A reply line does not have the shape its command produces."""


@dataclass(frozen=True, slots=True)
class ErrReply:
    """``ERR CODE text``; ``text`` has gearmand's ``+`` separators turned back into spaces."""

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class FunctionStatus:
    """One ``status`` line: jobs queued+running, running, registered workers."""

    function: str
    total: int
    running: int
    workers: int


@dataclass(frozen=True, slots=True)
class PriorityStatus:
    """One ``prioritystatus`` line: queued (not running) jobs per priority."""

    function: str
    high: int
    normal: int
    low: int
    workers: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One ``workers`` line: every connection, with the functions it registered."""

    fd: int
    ip: str
    client_id: str
    functions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One ``show jobs`` line."""

    handle: str
    retries: int
    ignored: bool
    queued: bool


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


def parse_err(line: bytes) -> ErrReply | None:
    """The ErrReply of an ``ERR`` line, or None for any other line.

    Most ERR lines are ``ERR CODE text+with+pluses``; gearmand's ``drop function`` ones
    are free text (``ERR there are still connected workers or executing clients``), so a
    first word that is not an upper-case code is text, and the code is empty."""
    if line != b"ERR" and not line.startswith(b"ERR "):
        return None
    _, _, rest = _text(line).partition(" ")
    code, _, text = rest.partition(" ")
    if code and not _is_code(code):
        return ErrReply("", rest.replace("+", " "))
    return ErrReply(code, text.replace("+", " "))


def _is_code(word: str) -> bool:
    return word.replace("_", "").isalnum() and word.upper() == word


def parse_ok(line: bytes) -> str:
    """The value of an ``OK`` / ``OK value`` line ("" for a bare OK)."""
    if line == b"OK":
        return ""
    if line.startswith(b"OK "):
        return _text(line[3:])
    raise AdminReplyError(f"expected an OK line, got {line!r}")


def _ints(parts: list[str], line: bytes) -> list[int]:
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise AdminReplyError(f"expected numbers in {line!r}") from None


def parse_status(lines: list[bytes]) -> list[FunctionStatus]:
    out = []
    for line in lines:
        parts = _text(line).split("\t")
        if len(parts) != 4:
            raise AdminReplyError(f"status line needs 4 tab-separated fields: {line!r}")
        total, running, workers = _ints(parts[1:], line)
        out.append(FunctionStatus(parts[0], total, running, workers))
    return out


def parse_priority_status(lines: list[bytes]) -> list[PriorityStatus]:
    out = []
    for line in lines:
        parts = _text(line).split("\t")
        if len(parts) != 5:
            raise AdminReplyError(f"prioritystatus line needs 5 tab-separated fields: {line!r}")
        high, normal, low, workers = _ints(parts[1:], line)
        out.append(PriorityStatus(parts[0], high, normal, low, workers))
    return out


#: ``FD IP CLIENT_ID :`` then `` FUNC`` per registration; the IP may itself contain
#: colons (IPv6) and the client id spaces, so the id ends at the first " :" after it.
_WORKER_LINE = re.compile(r"^(\d+) (\S+) (.*?) :((?: \S+)*)$")


def parse_workers(lines: list[bytes]) -> list[WorkerInfo]:
    out = []
    for line in lines:
        match = _WORKER_LINE.match(_text(line))
        if match is None:
            raise AdminReplyError(f"workers line must be 'FD IP ID : FUNCS': {line!r}")
        fd, ip, client_id, funcs = match.groups()
        out.append(WorkerInfo(int(fd), ip, client_id, tuple(funcs.split())))
    return out


def parse_jobs(lines: list[bytes]) -> list[JobInfo]:
    out = []
    for line in lines:
        parts = _text(line).split("\t")
        if len(parts) != 4:
            raise AdminReplyError(f"show jobs line needs 4 tab-separated fields: {line!r}")
        retries, ignored, queued = _ints(parts[1:], line)
        out.append(JobInfo(parts[0], retries, bool(ignored), bool(queued)))
    return out


def parse_unique_jobs(lines: list[bytes]) -> list[str]:
    return [_text(line) for line in lines]
