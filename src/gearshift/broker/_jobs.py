"""The broker's index of live jobs by handle.

Handles the broker mints are ``<prefix><n>`` with ``n`` counting up from 1, so the index
is an array, not a hash table: jobs sit in pages of :data:`PAGE_SIZE` slots by number, and
a lookup parses the number back out of the handle. A queued job costs one 8-byte slot
instead of a handle bytes object plus a dict entry (about 90 bytes: 90 MB per million
queued jobs). A page is freed once every job in it has ended, so a page outlives its
jobs only while one of them is still live (at most 8 KiB per long-running job).

Handles the broker did not mint -- jobs replayed from a store under an earlier boot's
prefix -- are kept in an ordinary dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from gearshift.broker._model import Job

PAGE_BITS: Final = 10
PAGE_SIZE: Final = 1 << PAGE_BITS
_PAGE_MASK: Final = PAGE_SIZE - 1

#: Longest number a minted handle can carry (int() of a longer digit string is slow, and
#: no counter gets there).
_MAX_DIGITS: Final = 18


class _Page:
    __slots__ = ("live", "slots")

    def __init__(self) -> None:
        self.slots: list[Job | None] = [None] * PAGE_SIZE
        self.live = 0


class JobTable:
    """Live jobs by handle, in creation order; a read-only mapping ``handle -> Job``.

    Args:
        prefix: what every minted handle starts with (the broker's handle prefix).
    """

    __slots__ = ("_fill", "_fill_no", "_foreign", "_live", "_next", "_pages",
                 "payload_bytes", "prefix")

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self._next = 1
        self._pages: dict[int, _Page] = {}
        self._fill = _Page()  # the page new numbers go to
        self._fill_no = 0
        self._pages[0] = self._fill
        self._live = 0
        self._foreign: dict[bytes, Job] = {}
        #: workload bytes of the live jobs (--max-memory counts against it)
        self.payload_bytes = 0

    @property
    def minted(self) -> int:
        """How many handles have been minted (numbers 1..minted)."""
        return self._next - 1

    @property
    def pages_in_use(self) -> int:
        """Pages allocated (the one being filled included): 8 KiB each."""
        return len(self._pages)

    def add(self, job: Job) -> int:
        """Give ``job`` the next number (its handle is prefix + number) and index it."""
        seq = self._next
        self._next = seq + 1
        page_no = seq >> PAGE_BITS
        page = self._fill
        if page_no != self._fill_no:
            if not page.live:
                del self._pages[self._fill_no]
            page = self._fill = self._pages[page_no] = _Page()
            self._fill_no = page_no
        page.slots[seq & _PAGE_MASK] = job
        page.live += 1
        self._live += 1
        self.payload_bytes += len(job.data)
        job.seq = seq
        return seq

    def readd(self, job: Job, seq: int) -> None:
        """Index ``job`` again under the number it was minted with (a job of this boot
        read back from the store: deep queues)."""
        page_no = seq >> PAGE_BITS
        page = self._pages.get(page_no)
        if page is None:
            page = self._pages[page_no] = _Page()
        page.slots[seq & _PAGE_MASK] = job
        page.live += 1
        self._live += 1
        self.payload_bytes += len(job.data)
        job.seq = seq

    def own_number(self, handle: bytes) -> int:
        """The number of a handle this table minted (prefix and canonical digits at most
        :attr:`minted`), or -1."""
        prefix = self.prefix
        if handle.startswith(prefix):
            digits = handle[len(prefix):]
            n = len(digits)
            if 0 < n <= _MAX_DIGITS and digits.isdigit() and (digits[0] != 48 or n == 1):
                seq = int(digits)
                if seq < self._next:
                    return seq
        return -1

    def add_foreign(self, handle: bytes, job: Job) -> None:
        """Index a job under a handle this table did not mint (a replayed job)."""
        job.seq = -1
        job.extras().handle = handle
        self._foreign[handle] = job
        self._live += 1
        self.payload_bytes += len(job.data)

    def remove(self, job: Job) -> None:
        """Forget ``job`` (no-op if it is not indexed)."""
        seq = job.seq
        if seq < 0:
            more = job.more
            if more is not None and self._foreign.get(more.handle) is job:
                del self._foreign[more.handle]
                self._live -= 1
                self.payload_bytes -= len(job.data)
            return
        page_no = seq >> PAGE_BITS
        page = self._pages.get(page_no)
        if page is None or page.slots[seq & _PAGE_MASK] is not job:
            return
        page.slots[seq & _PAGE_MASK] = None
        page.live -= 1
        self._live -= 1
        self.payload_bytes -= len(job.data)
        if not page.live and page_no != self._fill_no:
            del self._pages[page_no]

    def get(self, handle: bytes) -> Job | None:
        """The live job with this handle, or None."""
        # Only the canonical spelling: "H:x:007" or "H:x:+7" is not job 7's handle.
        seq = self.own_number(handle)
        if seq >= 0:
            page = self._pages.get(seq >> PAGE_BITS)
            if page is not None:
                job = page.slots[seq & _PAGE_MASK]
                if job is not None:
                    return job
        if self._foreign:
            return self._foreign.get(handle)
        return None

    # -------------------------------------------------------------- mapping protocol

    def __len__(self) -> int:
        return self._live

    def __contains__(self, handle: object) -> bool:
        return isinstance(handle, bytes) and self.get(handle) is not None

    def __getitem__(self, handle: bytes) -> Job:
        job = self.get(handle)
        if job is None:
            raise KeyError(handle)
        return job

    def values(self) -> Iterator[Job]:
        """Every live job: replayed ones first, then by number (creation order).

        May be resumed after the table changed (a long admin listing is produced over
        several loop iterations, broker/_listing.py): it walks snapshots of the replayed
        handles and of the page numbers, a job that ended since is skipped, and it holds
        no job itself; jobs created after it began are not included. The snapshots cost
        8 bytes per replayed job and per page.
        """
        end = self._next  # numbers from here on are minted after the walk began
        foreign = self._foreign
        for handle in list(foreign):
            job = foreign.get(handle)
            if job is not None:
                yield job
        for page_no in sorted(self._pages):
            page = self._pages.get(page_no)
            if page is None:
                continue
            for job in page.slots:
                if job is not None and job.seq < end:
                    yield job

    def __iter__(self) -> Iterator[bytes]:
        for job in self.values():
            yield job.handle

    def items(self) -> Iterator[tuple[bytes, Job]]:
        for job in self.values():
            yield job.handle, job
