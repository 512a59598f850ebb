"""Byte layouts for values the stores hold opaquely.

memcached keeps every record as one self-describing value, so binary payloads (NUL bytes
included) round-trip exactly; its index is packed into further values. The SQL backends
and Redis use only :func:`pack_reasons`, to keep a list of byte strings in one column.
Pure functions, no I/O: each backend decides where the bytes go.

Every record starts with a version byte, so older values stay readable: a version-1 job
record (written before ``submitted`` existed) loads with ``submitted=0.0``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gearshift.store._base import StoredJob, StoredOutcome, StoredSchedule

# version, priority, when, then lengths of handle, function, unique, reducer, data
_JOB_V1 = struct.Struct(">BBqIIIII")
# version, priority, when, submitted, then the same five lengths
_JOB_V2 = struct.Struct(">BBqdIIIII")
# version, priority, dead, attempts, submitted, started, ended, then lengths of handle,
# function, unique, state, result, data, reducer, packed reasons
_OUTCOME = struct.Struct(">BBBQdddIIIIIIII")
# version, priority, last_fired, then lengths of key, function, unique, cron, data
_SCHEDULE = struct.Struct(">BBdIIIII")
_ENTRY = struct.Struct(">HI")  # version-1 index: handle length, retries
_INDEX2 = struct.Struct(">4sIII")  # magic, then counts of jobs, outcomes, schedules
_JOB_ENTRY = struct.Struct(">HIq")  # handle length, retries, when (-1: the record's)
_REF_ENTRY = struct.Struct(">HBI")  # handle or key length, tag length, pieces
_INDEX2_MAGIC = b"GSI2"
_LENGTH = struct.Struct(">I")


def _fields(blob: bytes, pos: int, lengths: tuple[int, ...] | list[int], what: str
            ) -> list[bytes]:
    """The byte strings of ``lengths`` starting at ``pos``, which must end the blob."""
    if pos + sum(lengths) != len(blob):
        raise ValueError(f"stored {what} record length does not match its header")
    out: list[bytes] = []
    for size in lengths:
        out.append(blob[pos:pos + size])
        pos += size
    return out


def _header(blob: bytes, layout: struct.Struct, what: str) -> tuple[int, ...]:
    if len(blob) < layout.size:
        raise ValueError(f"stored {what} record is truncated")
    return layout.unpack_from(blob)


# ---------------------------------------------------------------------- jobs


def pack_job(job: StoredJob) -> bytes:
    """The job without its retry count (that lives in the index, see pack_index)."""
    head = _JOB_V2.pack(2, job.priority, job.when, job.submitted, len(job.handle),
                        len(job.function), len(job.unique), len(job.reducer), len(job.data))
    return b"".join((head, job.handle, job.function, job.unique, job.reducer, job.data))


def unpack_job(blob: bytes, retries: int) -> StoredJob:
    """Inverse of :func:`pack_job`; also reads version 1 (no ``submitted``: 0.0).

    Raises ValueError on a truncated or foreign value.
    """
    if not blob:
        raise ValueError("stored job record is truncated")
    if blob[0] == 1:
        _, priority, when, *lengths = _header(blob, _JOB_V1, "job")
        submitted, size = 0.0, _JOB_V1.size
    elif blob[0] == 2:
        _, priority, when, submitted, *lengths = _header(blob, _JOB_V2, "job")
        size = _JOB_V2.size
    else:
        raise ValueError(f"stored job record has unknown version {blob[0]}")
    handle, function, unique, reducer, data = _fields(blob, size, lengths, "job")
    return StoredJob(handle, function, unique, data, priority, when, reducer, retries,
                     submitted)


# ------------------------------------------------------------ outcomes, schedules


def pack_reasons(reasons: list[bytes]) -> bytes:
    """A list of byte strings as one value: each as a 4-byte length, then its bytes."""
    return b"".join(_LENGTH.pack(len(r)) + r for r in reasons)


def unpack_reasons(blob: bytes) -> list[bytes]:
    """Inverse of :func:`pack_reasons`. Raises ValueError on a truncated value."""
    out: list[bytes] = []
    pos = 0
    while pos < len(blob):
        if pos + _LENGTH.size > len(blob):
            raise ValueError("stored reasons are truncated")
        (size,) = _LENGTH.unpack_from(blob, pos)
        pos += _LENGTH.size
        if pos + size > len(blob):
            raise ValueError("stored reasons are truncated")
        out.append(blob[pos:pos + size])
        pos += size
    return out


def pack_outcome(o: StoredOutcome) -> bytes:
    state = o.state.encode()
    reasons = pack_reasons(o.reasons)
    parts = (o.handle, o.function, o.unique, state, o.result, o.data, o.reducer, reasons)
    head = _OUTCOME.pack(1, o.priority, int(o.dead), o.attempts, o.submitted, o.started,
                         o.ended, *(len(p) for p in parts))
    return head + b"".join(parts)


def unpack_outcome(blob: bytes) -> StoredOutcome:
    """Inverse of :func:`pack_outcome`. Raises ValueError on a truncated or foreign value."""
    version, priority, dead, attempts, submitted, started, ended, *lengths = _header(
        blob, _OUTCOME, "outcome")
    if version != 1:
        raise ValueError(f"stored outcome record has unknown version {version}")
    handle, function, unique, state, result, data, reducer, reasons = _fields(
        blob, _OUTCOME.size, lengths, "outcome")
    return StoredOutcome(handle, function, unique, state.decode(), result, attempts,
                         submitted, started, ended, bool(dead), data, priority, reducer,
                         unpack_reasons(reasons))


def pack_schedule(s: StoredSchedule) -> bytes:
    parts = (s.key, s.function, s.unique, s.cron.encode(), s.data)
    return _SCHEDULE.pack(1, s.priority, s.last_fired, *(len(p) for p in parts)) + b"".join(parts)


def unpack_schedule(blob: bytes) -> StoredSchedule:
    """Inverse of :func:`pack_schedule`. Raises ValueError on a truncated or foreign value."""
    version, priority, last_fired, *lengths = _header(blob, _SCHEDULE, "schedule")
    if version != 1:
        raise ValueError(f"stored schedule record has unknown version {version}")
    key, function, unique, cron, data = _fields(blob, _SCHEDULE.size, lengths, "schedule")
    return StoredSchedule(key, function, unique, cron.decode(), data, priority, last_fired)


# ---------------------------------------------------------------------- index


def pack_index(entries: dict[bytes, int]) -> bytes:
    """Version 1 of the index: ``handle -> retries`` in insertion order."""
    return b"".join(_ENTRY.pack(len(h), n) + h for h, n in entries.items())


def unpack_index(blob: bytes) -> dict[bytes, int]:
    """Inverse of :func:`pack_index`. Raises ValueError on a truncated value."""
    entries: dict[bytes, int] = {}
    pos = 0
    while pos < len(blob):
        if pos + _ENTRY.size > len(blob):
            raise ValueError("stored index is truncated")
        size, retries = _ENTRY.unpack_from(blob, pos)
        pos += _ENTRY.size
        entries[blob[pos:pos + size]] = retries
        pos += size
    if pos != len(blob):
        raise ValueError("stored index is truncated")
    return entries


#: Where a record lives: the tag of the commit that wrote it, and its piece count.
Ref = tuple[str, int]


@dataclass(slots=True)
class Index:
    """Version 2 of the memcached index: everything one commit makes visible.

    Job records never change, so a job's mutable fields live here: its retry count and
    its run-at time (-1 = the one in its record). Outcomes and schedules can be replaced,
    so each version is a new record under the tag of the commit that wrote it, and the
    index says which version is current.
    """

    jobs: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # (retries, when)
    outcomes: dict[bytes, Ref] = field(default_factory=dict)   # handle -> record
    schedules: dict[bytes, Ref] = field(default_factory=dict)  # key -> record

    def copy(self) -> Index:
        return Index(dict(self.jobs), dict(self.outcomes), dict(self.schedules))


def pack_index2(index: Index) -> bytes:
    out = [_INDEX2.pack(_INDEX2_MAGIC, len(index.jobs), len(index.outcomes),
                        len(index.schedules))]
    out += [_JOB_ENTRY.pack(len(h), n, w) + h for h, (n, w) in index.jobs.items()]
    for refs in (index.outcomes, index.schedules):
        for name, (tag, pieces) in refs.items():
            raw = tag.encode()
            out.append(_REF_ENTRY.pack(len(name), len(raw), pieces) + name + raw)
    return b"".join(out)


def unpack_index2(blob: bytes) -> Index:
    """Inverse of :func:`pack_index2`. Raises ValueError on a truncated or foreign value."""
    if len(blob) < _INDEX2.size or blob[:4] != _INDEX2_MAGIC:
        raise ValueError("stored index is truncated or not version 2")
    _, njobs, nout, nsched = _INDEX2.unpack_from(blob)
    index = Index()
    pos = _INDEX2.size
    try:
        for _ in range(njobs):
            size, retries, when = _JOB_ENTRY.unpack_from(blob, pos)
            pos += _JOB_ENTRY.size
            index.jobs[blob[pos:pos + size]] = (retries, when)
            pos += size
        for refs, count in ((index.outcomes, nout), (index.schedules, nsched)):
            for _ in range(count):
                size, tag_size, pieces = _REF_ENTRY.unpack_from(blob, pos)
                pos += _REF_ENTRY.size
                name = blob[pos:pos + size]
                refs[name] = (blob[pos + size:pos + size + tag_size].decode(), pieces)
                pos += size + tag_size
    except struct.error as exc:
        raise ValueError("stored index is truncated") from exc
    if pos != len(blob):
        raise ValueError("stored index is truncated")
    return index


def split(blob: bytes, size: int) -> list[bytes]:
    """``blob`` in pieces of at most ``size`` bytes (at least one piece)."""
    return [blob[i:i + size] for i in range(0, len(blob), size)] or [b""]
