"""Durable queues for background jobs: one contract, several backends.

Backends are chosen by URL (see :func:`open_store`) and their drivers are imported only
when their scheme is used, so ``gearshift serve`` with the default SQLite store needs
nothing outside the standard library.
"""

from gearshift.store._base import Batch, Store, StoredJob, StoreError
from gearshift.store._committer import GroupCommitter
from gearshift.store._open import open_store, redact

__all__ = ["Batch", "GroupCommitter", "Store", "StoreError", "StoredJob", "open_store", "redact"]
