"""Command lines for gearshift's own admin commands (outcomes, dead letters, schedules).

The text protocol splits a line on whitespace, so a handle, function name or unique key
holding a space or a control character cannot be sent as one word: it would be read as
several arguments (or end the line early). Such values are refused here, before any
I/O, instead of being answered with a confusing usage error. A handle no server could
ever have issued is reported as :class:`UnknownJob`, which is what it is.
"""

from __future__ import annotations

import base64

from gearshift.client._errors import UnknownJob
from gearshift.client._models import Priority, priority_name


def _is_word(text: str) -> bool:
    return bool(text) and not any(c.isspace() or not c.isprintable() for c in text)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def handle_word(handle: str | bytes) -> str:
    """The handle as one command word; UnknownJob if it cannot be a handle at all."""
    text = _text(handle)
    if not _is_word(text):
        raise UnknownJob(f"not a job handle: {text!r}")
    return text


def word(what: str, value: str | bytes) -> str:
    """``value`` as one command word (ValueError if it has whitespace or is empty)."""
    text = _text(value)
    if not _is_word(text):
        raise ValueError(f"{what} must be one word without spaces, not {text!r}")
    return text


def dead_target(handle: str | bytes | None, every: bool, function: str | bytes | None) -> str:
    """``HANDLE``, ``all`` or ``function F``: exactly one of them must be given."""
    given = (handle is not None) + every + (function is not None)
    if given != 1:
        raise ValueError("name exactly one of: a handle, all=True, function=...")
    if handle is not None:
        return handle_word(handle)
    if every:
        return "all"
    assert function is not None
    return f"function {word('function', function)}"


def cron_fields(cron: str) -> str:
    """The five cron fields, single-spaced (ValueError for another count)."""
    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(f"cron needs 5 fields (MIN HOUR DOM MON DOW), got {cron!r}")
    return " ".join(fields)


def schedule_add(function: str | bytes, cron: str, data: bytes, unique: str | bytes,
                 priority: Priority | str) -> str:
    """The ``schedule add`` line (options only when they differ from the defaults)."""
    parts = ["schedule add", word("function", function), cron_fields(cron)]
    if unique:
        parts.append(f"unique={word('unique key', unique)}")
    if data:
        parts.append(f"data={base64.b64encode(data).decode('ascii')}")
    name = priority_name(priority)
    if name != "normal":
        parts.append(f"priority={name}")
    return " ".join(parts)
