"""A multi-line admin reply produced a bounded piece at a time.

``show jobs`` over 200k queued jobs is ~7 MB of text; built in one piece it held the
event loop for its whole length and the whole text (plus a bytes object per row) in
memory at once, for every connection that asked, whether or not it read the answer.
A :class:`Listing` is the reply's rows as a generator and the line that ends it: the
broker asks it for ``ADMIN_BATCH_BYTES`` of rows at a time (``Broker.resume``), and the
I/O shell asks again only when the previous piece has left (``server._wire.Pump``, the
same back-pressure that holds back a pipelined admin flood). A client that does not
read gets the first pieces into its socket buffers and nothing more is produced.

The row generators walk snapshots of *keys* (function names, peer ids, dead-letter
handles; the job table's page numbers) and look each one up when its row is produced,
so a listing never breaks when the broker changes between two pieces and pins no job,
payload or connection: a row is what its entry is at that moment, an entry gone by then
is left out, and one created after the listing began is not listed. With no change in
between, the bytes are exactly those of the one-piece reply.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

END: Final = b".\n"


class Listing:
    """Rows still to send and the reply's last line.

    Args:
        rows: the rows, each a complete line (a generator, usually).
        end: sent once the rows are exhausted.
    """

    __slots__ = ("done", "end", "rows")

    def __init__(self, rows: Iterator[bytes], end: bytes = END) -> None:
        self.rows = rows
        self.end = end
        self.done = False

    def more(self, budget: int) -> bytes:
        """The next rows, about ``budget`` bytes (whole rows: at least one, a row is
        never split); with the end line, and ``done`` set, once none is left."""
        chunks: list[bytes] = []
        size = 0
        for row in self.rows:
            chunks.append(row)
            size += len(row)
            if size >= budget:
                return b"".join(chunks)
        self.done = True
        chunks.append(self.end)
        return b"".join(chunks)
