"""Client, worker and admin libraries, asyncio (``Async*``) and blocking.

The asyncio classes in ``_async`` are the source of truth; the blocking classes in
``_sync`` are generated from them by ``scripts/unasync.py`` (a test fails on drift), so the
two flavours share one code path. I/O-free pieces (packet routing, tasks, server lists,
codecs, errors) live beside them and are shared as they are.
"""

from gearshift.client._async._admin import AsyncAdminClient
from gearshift.client._async._client import AsyncClient, AsyncTaskSet
from gearshift.client._async._worker import AsyncJob, AsyncWorker
from gearshift.client._errors import (
    AdminError,
    ConnectionFailed,
    ConnectionLost,
    GearmanError,
    GearmanTimeout,
    JobException,
    JobFailed,
    PayloadError,
    ServerError,
    UnknownJob,
)
from gearshift.client._models import (
    ClusterServer,
    EventKind,
    FunctionLimits,
    JobEvent,
    JobOutcome,
    JobStatus,
    Priority,
    Schedule,
    Task,
    TaskState,
    UniqueStatus,
)
from gearshift.client._processes import WorkerProcesses
from gearshift.client._servers import Address, parse_servers
from gearshift.client._sync._admin import AdminClient
from gearshift.client._sync._client import Client, TaskSet
from gearshift.client._sync._worker import Job, Worker
from gearshift.client._tls import tls_context
from gearshift.protocol._admin import FunctionStatus, JobInfo, PriorityStatus, WorkerInfo

__all__ = [
    "Address",
    "AdminClient",
    "AdminError",
    "AsyncAdminClient",
    "AsyncClient",
    "AsyncJob",
    "AsyncTaskSet",
    "AsyncWorker",
    "Client",
    "ClusterServer",
    "ConnectionFailed",
    "ConnectionLost",
    "EventKind",
    "FunctionLimits",
    "FunctionStatus",
    "GearmanError",
    "GearmanTimeout",
    "Job",
    "JobEvent",
    "JobException",
    "JobFailed",
    "JobInfo",
    "JobOutcome",
    "JobStatus",
    "PayloadError",
    "Priority",
    "PriorityStatus",
    "Schedule",
    "ServerError",
    "Task",
    "TaskSet",
    "TaskState",
    "UniqueStatus",
    "UnknownJob",
    "Worker",
    "WorkerInfo",
    "WorkerProcesses",
    "parse_servers",
    "tls_context",
]
