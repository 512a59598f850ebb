"""Sans-I/O Gearman dispatch: jobs, queues, workers, coalescing, priorities and timers."""

from gearshift.broker._broker import Broker
from gearshift.broker._config import BrokerConfig, PageHooks, StoreHooks
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
from gearshift.broker._outcomes import Outcome, OutcomeBook
from gearshift.broker._packets import NO_JOB_PACKET, NOOP_PACKET, error_packet, packet
from gearshift.broker._queue_limits import QueueLimit, QueueLimits, parse_max_queue
from gearshift.broker._retry import RetryPolicies, RetryPolicy, parse_retry
from gearshift.broker._schedules import Schedule, cron_from_gearman, validate_cron
from gearshift.broker._spill import Lookup, PagedRow

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
    "Lookup",
    "Outcome",
    "OutcomeBook",
    "PageHooks",
    "PagedRow",
    "Peer",
    "QueueLimit",
    "QueueLimits",
    "RetryPolicies",
    "RetryPolicy",
    "Schedule",
    "StoreHooks",
    "cron_from_gearman",
    "error_packet",
    "packet",
    "parse_max_queue",
    "parse_retry",
    "validate_cron",
]
