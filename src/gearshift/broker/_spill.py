"""What the broker remembers of jobs that live only in the store (deep queues).

With ``--queue-memory`` a queue keeps its head in memory and the rest of its jobs only
in the store (see ``broker/_deep.py``). Per such *spilled* job three questions must
still be answered at once, without the store: is this handle a live job (GET_STATUS,
``show jobs``), and may a new submission coalesce onto a queued job with its unique
key? A job record is ~330 bytes; this keeps ~17:

* **A reference**: a handle is ``<prefix><number>`` (``H:host:3.1234``), and handles
  share a few prefixes (one per boot), so a job is ``prefix index << 36 | number``.
  Handles that do not end in a number, or with too many prefixes, cannot be spilled.
* **Membership**: one bit per reference, in 8 KiB chunks of 65,536 numbers, freed
  when empty. A set bit means "queued in the store, not in memory": it is the one
  truth that pages read back and cancellations are checked against.
* **Coalescing**: an open-addressing table (linear probing, two ``array`` columns:
  the 64-bit hash of (function, unique key) and the reference; 16 bytes a slot, at
  most 3/4 full). A hash match is only a *candidate*: the broker reads the job back
  by handle and compares before it coalesces (``Broker._join_spilled``). A dict of
  bytes keys cost ~100 bytes a job; 10M unique keys fit in 268 MB here.

Python's ``hash`` of bytes is randomised per process; the table is rebuilt from the
store at every start, so nothing depends on the hash staying the same.
"""

from __future__ import annotations

from array import array
from typing import Final

from gearshift.broker._model import Ack, Peer

#: A job read back from the store: (position, handle, function, unique, data, priority,
#: run-at time, reducer, retries, submitted); the position is 0 for a lookup by handle.
PagedRow = tuple[int, bytes, bytes, bytes, bytes, int, int, bytes, int, float]

#: What a :class:`Lookup` waits to decide.
SUBMIT: Final = 0  # a submission whose unique key may name a spilled job
STATUS_UNIQUE: Final = 1  # GET_STATUS_UNIQUE of a key only a spilled job may have
CANCEL: Final = 2  # admin ``cancel job`` of a spilled job

#: Bits of a reference that hold the handle's number (68.7 billion jobs per prefix).
NUMBER_BITS: Final = 36
_NUMBER_MASK: Final = (1 << NUMBER_BITS) - 1
#: Prefixes a reference can name (index 0 is unused, so a reference is never 0).
MAX_PREFIXES: Final = 4096
_CHUNK_BITS: Final = 16
_CHUNK_MASK: Final = (1 << _CHUNK_BITS) - 1
_MASK64: Final = (1 << 64) - 1
#: A slot's reference when it is free, and when its entry was removed (a tombstone).
_FREE: Final = 0
_GONE: Final = -1
_MIN_SLOTS: Final = 1024


class SpillIndex:
    """References, membership bits and the coalescing table of spilled jobs."""

    __slots__ = ("_chunks", "_counts", "_hashes", "_live", "_mask", "_refs", "_used",
                 "count", "names", "prefixes")

    def __init__(self) -> None:
        self.prefixes: dict[bytes, int] = {}
        self.names: list[bytes] = [b""]
        self._chunks: dict[int, bytearray] = {}
        self._counts: dict[int, int] = {}
        #: spilled jobs (set membership bits)
        self.count = 0
        self._hashes: array[int] = array("Q", bytes(8 * _MIN_SLOTS))
        self._refs: array[int] = array("q", bytes(8 * _MIN_SLOTS))
        self._mask = _MIN_SLOTS - 1
        self._live = 0
        self._used = 0  # live entries and tombstones

    # ------------------------------------------------------------- references

    def ref(self, handle: bytes, create: bool = False) -> int:
        """``handle`` as a reference, or -1 when it cannot be one (no number at its end,
        a non-canonical number, or -- unless ``create`` -- an unknown prefix)."""
        end = len(handle)
        i = end
        while i > 0 and 48 <= handle[i - 1] <= 57:
            i -= 1
        digits = end - i
        if digits == 0 or digits > 11 or (digits > 1 and handle[i] == 48):
            return -1
        number = int(handle[i:])
        if number > _NUMBER_MASK:
            return -1
        prefix = handle[:i]
        index = self.prefixes.get(prefix, 0)
        if not index:
            if not create or len(self.names) >= MAX_PREFIXES:
                return -1
            index = len(self.names)
            self.prefixes[prefix] = index
            self.names.append(prefix)
        return (index << NUMBER_BITS) | number

    def handle(self, ref: int) -> bytes:
        return b"%s%d" % (self.names[ref >> NUMBER_BITS], ref & _NUMBER_MASK)

    # ------------------------------------------------------------- membership

    def mark(self, ref: int) -> None:
        key = ref >> _CHUNK_BITS
        chunk = self._chunks.get(key)
        if chunk is None:
            chunk = self._chunks[key] = bytearray(1 << (_CHUNK_BITS - 3))
            self._counts[key] = 0
        bit = ref & _CHUNK_MASK
        byte = chunk[bit >> 3]
        flag = 1 << (bit & 7)
        if not byte & flag:
            chunk[bit >> 3] = byte | flag
            self._counts[key] += 1
            self.count += 1

    def holds(self, ref: int) -> bool:
        """Whether ``ref`` is a spilled job."""
        if ref < 0:
            return False
        chunk = self._chunks.get(ref >> _CHUNK_BITS)
        bit = ref & _CHUNK_MASK
        return chunk is not None and bool(chunk[bit >> 3] & (1 << (bit & 7)))

    def unmark(self, ref: int) -> bool:
        """Forget ``ref``; False if it was not spilled (already paged in, or gone)."""
        if not self.holds(ref):
            return False
        key = ref >> _CHUNK_BITS
        chunk = self._chunks[key]
        bit = ref & _CHUNK_MASK
        chunk[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
        self.count -= 1
        left = self._counts[key] - 1
        if left:
            self._counts[key] = left
        else:
            del self._chunks[key], self._counts[key]
        return True

    def refs(self) -> list[int]:
        """Every spilled reference, by prefix and number."""
        found: list[int] = []
        for key in sorted(self._chunks):
            chunk = self._chunks[key]
            base = key << _CHUNK_BITS
            for at in range(len(chunk)):  # (mypyc cannot iterate a bytearray)
                byte = chunk[at]
                if byte:
                    for bit in range(8):
                        if byte & (1 << bit):
                            found.append(base + at * 8 + bit)
        return found

    # ------------------------------------------------------------- coalescing

    @staticmethod
    def key_hash(function: bytes, unique: bytes, data: bytes) -> int:
        """The table's hash of a job's coalescing key (never 0): (function, unique), or
        for the unique ``-`` (function, payload)."""
        if unique == b"-":
            return (hash((function, data, 1)) & _MASK64) or 1
        return (hash((function, unique)) & _MASK64) or 1

    def add_key(self, h: int, ref: int) -> None:
        if (self._used + 1) * 4 > (self._mask + 1) * 3:
            self._resize()
        hashes, refs, mask = self._hashes, self._refs, self._mask
        i = h & mask
        while refs[i] > 0:
            i = (i + 1) & mask
        if refs[i] == _FREE:
            self._used += 1
        hashes[i] = h
        refs[i] = ref
        self._live += 1

    def candidates(self, h: int) -> list[int]:
        """References whose key has hash ``h`` (each must be checked against the store)."""
        hashes, refs, mask = self._hashes, self._refs, self._mask
        found: list[int] = []
        i = h & mask
        while True:
            ref = refs[i]
            if ref == _FREE:
                return found
            if ref > 0 and hashes[i] == h:
                found.append(ref)
            i = (i + 1) & mask

    def remove_key(self, h: int, ref: int) -> None:
        hashes, refs, mask = self._hashes, self._refs, self._mask
        i = h & mask
        while True:
            found = refs[i]
            if found == _FREE:
                return
            if found == ref and hashes[i] == h:
                refs[i] = _GONE
                self._live -= 1
                return
            i = (i + 1) & mask

    @property
    def keys(self) -> int:
        """Entries in the coalescing table."""
        return self._live

    @property
    def table_bytes(self) -> int:
        return 16 * (self._mask + 1)

    def _resize(self) -> None:
        """Rehash into a table at most 3/8 full (smaller when entries were removed)."""
        slots = _MIN_SLOTS
        while slots * 3 < self._live * 8:
            slots *= 2
        old_hashes, old_refs = self._hashes, self._refs
        self._hashes = array("Q", bytes(8 * slots))
        self._refs = array("q", bytes(8 * slots))
        self._mask = slots - 1
        self._used = self._live = 0
        for i in range(len(old_refs)):
            ref = old_refs[i]
            if ref > 0:
                self.add_key(old_hashes[i], ref)


class Lookup:
    """A request that waits for spilled jobs to be read back by handle, and its reply
    (held in the peer's reply stream meanwhile). ``kind`` says what it decides."""

    __slots__ = ("ack", "background", "data", "function", "kind", "peer", "priority",
                 "reducer", "unique", "when")

    def __init__(self, kind: int, peer: Peer, ack: Ack, function: bytes = b"",
                 unique: bytes = b"", data: bytes = b"", priority: int = 1,
                 background: bool = True, when: int = 0, reducer: bytes = b"") -> None:
        self.kind = kind
        self.peer = peer
        self.ack = ack
        self.function = function
        self.unique = unique
        self.data = data  # the payload; for CANCEL, the handle
        self.priority = priority
        self.background = background
        self.when = when
        self.reducer = reducer
