"""gearshift: a Gearman-compatible job server, with client, worker and admin libraries.

The package is layered so that the wire format and the dispatch rules can be tested
with plain function calls:

* :mod:`gearshift.protocol` -- bytes <-> packets and admin text lines (no I/O);
* :mod:`gearshift.broker`   -- jobs, queues, workers, coalescing, timers as data (no I/O);
* :mod:`gearshift.server`   -- the asyncio shell that owns sockets, timers and storage;
* :mod:`gearshift.client`   -- client, worker and admin libraries (asyncio and blocking);
* :mod:`gearshift.testing`  -- start a real server on a free port, for tests.
"""

from gearshift._version import __version__
from gearshift.client import (
    AdminClient,
    AdminError,
    AsyncAdminClient,
    AsyncClient,
    AsyncJob,
    AsyncTaskSet,
    AsyncWorker,
    Client,
    ConnectionFailed,
    ConnectionLost,
    EventKind,
    FunctionLimits,
    GearmanError,
    GearmanTimeout,
    Job,
    JobEvent,
    JobException,
    JobFailed,
    JobOutcome,
    JobStatus,
    PayloadError,
    Priority,
    Schedule,
    ServerError,
    Task,
    TaskSet,
    UniqueStatus,
    UnknownJob,
    Worker,
    WorkerProcesses,
)

__all__ = [
    "AdminClient",
    "AdminError",
    "AsyncAdminClient",
    "AsyncClient",
    "AsyncJob",
    "AsyncTaskSet",
    "AsyncWorker",
    "Client",
    "ConnectionFailed",
    "ConnectionLost",
    "EventKind",
    "FunctionLimits",
    "GearmanError",
    "GearmanTimeout",
    "Job",
    "JobEvent",
    "JobException",
    "JobFailed",
    "JobOutcome",
    "JobStatus",
    "PayloadError",
    "Priority",
    "Schedule",
    "ServerError",
    "Task",
    "TaskSet",
    "UniqueStatus",
    "UnknownJob",
    "Worker",
    "WorkerProcesses",
    "__version__",
]
