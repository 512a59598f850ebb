"""The only I/O primitives the client, worker and admin code use, in two flavours.

``asyncio_`` and ``sync_`` define the same names with the same signatures; the library
code under ``client/_async`` imports ``asyncio_`` and ``scripts/unasync.py`` rewrites that
import (and ``Async*`` names) to ``sync_`` when it generates ``client/_sync``. All
differences between the flavours live in these two small files.
"""
