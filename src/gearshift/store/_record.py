"""Byte layouts for key-value stores that hold opaque values (memcached).

A job is packed into one self-describing value so that binary payloads (NUL bytes
included) round-trip exactly, and an index of ``(handle, retries)`` pairs is packed into
another. Pure functions, no I/O: the memcached backend decides where the bytes go.
"""

from __future__ import annotations

import struct

from gearshift.store._base import StoredJob

_VERSION = 1
# version, priority, when, then lengths of handle, function, unique, reducer, data
_JOB = struct.Struct(">BBqIIIII")
_ENTRY = struct.Struct(">HI")  # handle length, retries


def pack_job(job: StoredJob) -> bytes:
    """The job without its retry count (that lives in the index, see pack_index)."""
    head = _JOB.pack(_VERSION, job.priority, job.when, len(job.handle), len(job.function),
                     len(job.unique), len(job.reducer), len(job.data))
    return b"".join((head, job.handle, job.function, job.unique, job.reducer, job.data))


def unpack_job(blob: bytes, retries: int) -> StoredJob:
    """Inverse of :func:`pack_job`. Raises ValueError on a truncated or foreign value."""
    if len(blob) < _JOB.size:
        raise ValueError("stored job record is truncated")
    version, priority, when, *lengths = _JOB.unpack_from(blob)
    if version != _VERSION:
        raise ValueError(f"stored job record has unknown version {version}")
    if _JOB.size + sum(lengths) != len(blob):
        raise ValueError("stored job record length does not match its header")
    fields: list[bytes] = []
    pos = _JOB.size
    for size in lengths:
        fields.append(blob[pos:pos + size])
        pos += size
    handle, function, unique, reducer, data = fields
    return StoredJob(handle, function, unique, data, priority, when, reducer, retries)


def pack_index(entries: dict[bytes, int]) -> bytes:
    """``handle -> retries`` in insertion order."""
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


def split(blob: bytes, size: int) -> list[bytes]:
    """``blob`` in pieces of at most ``size`` bytes (at least one piece)."""
    return [blob[i:i + size] for i in range(0, len(blob), size)] or [b""]
