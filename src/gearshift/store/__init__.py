"""Durable queues for background jobs: one contract, several backends.

Backends are chosen by URL (see :func:`open_store`) and their drivers are imported only
when their scheme is used, so ``gearshift serve`` with the default SQLite store needs
nothing outside the standard library.
"""

from gearshift.store._base import (
    OUTCOME_STATES,
    Batch,
    FencedError,
    JobRow,
    LeaseInfo,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
    row_job,
)
from gearshift.store._committer import GroupCommitter
from gearshift.store._open import open_store, redact

__all__ = [
    "OUTCOME_STATES",
    "Batch",
    "FencedError",
    "GroupCommitter",
    "JobRow",
    "LeaseInfo",
    "Store",
    "StoreError",
    "StoredJob",
    "StoredOutcome",
    "StoredSchedule",
    "open_store",
    "redact",
    "row_job",
]
