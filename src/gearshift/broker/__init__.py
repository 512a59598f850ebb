"""Sans-I/O Gearman dispatch: jobs, queues, workers, coalescing, priorities and timers."""

from gearshift.broker._broker import (
    NO_JOB_PACKET,
    NOOP_PACKET,
    Broker,
    BrokerConfig,
    StoreHooks,
    error_packet,
    packet,
)
from gearshift.broker._model import (
    DONE,
    HIGH,
    LOW,
    NORMAL,
    PENDING,
    QUEUED,
    RUNNING,
    SCHEDULED,
    Function,
    Job,
    Peer,
)

__all__ = [
    "DONE",
    "HIGH",
    "LOW",
    "NOOP_PACKET",
    "NORMAL",
    "NO_JOB_PACKET",
    "PENDING",
    "QUEUED",
    "RUNNING",
    "SCHEDULED",
    "Broker",
    "BrokerConfig",
    "Function",
    "Job",
    "Peer",
    "StoreHooks",
    "error_packet",
    "packet",
]
