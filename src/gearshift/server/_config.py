"""Server settings: one frozen record built from the command line (see cli/_serve.py)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from gearshift.broker._access import LOOPBACK, Network
from gearshift.broker._acl import Acl
from gearshift.broker._flow import ConcurrencyRule, RateRule, WeightRule
from gearshift.broker._queue_limits import QueueLimit
from gearshift.broker._retry import RetryPolicy
from gearshift.protocol._spec import DEFAULT_MAX_PACKET_SIZE

if TYPE_CHECKING:
    from gearshift.server._tls import TlsConfig

DEFAULT_PORT: Final = 4730

#: Open connections beyond which new ones are accepted and closed at once: far above what
#: a job server's clients and workers need, far below what exhausts memory (each idle
#: connection costs a few KiB) -- but mind ``ulimit -n`` (see docs/operations.md).
DEFAULT_MAX_CONNECTIONS: Final = 10_000
#: Seconds a started packet has to arrive in full (--packet-timeout): generous for a
#: 64 MiB body on a slow link, short enough that stalled peers cannot hold memory long.
DEFAULT_PACKET_TIMEOUT: Final = 30.0
#: Bytes all connections together may hold in partly received packets
#: (--partial-packets-max): four bodies of the default --max-packet-size.
DEFAULT_PARTIAL_PACKETS_MAX: Final = 256 << 20

#: Seconds a server's lease on a shared store lasts (see server/_cluster.py): how long
#: its jobs wait after it died before another server adopts them.
DEFAULT_LEASE: Final = 5.0

#: Bounds of --lease: renewals every lease/3 must stay cheap (a statement each) and
#: a server's jobs must not wait hours for adoption.
MIN_LEASE: Final = 1.0
MAX_LEASE: Final = 3600.0

#: Seconds SIGTERM waits for running jobs before closing every connection anyway.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 10.0

#: Seconds the event loop keeps polling without sleeping after a read (--busy-poll):
#: longer than the gaps between the packets of one job at depth 1 here (~20-60 us), so
#: a stream of jobs never lets the CPU halt, and short enough that a lone job costs
#: the server no more CPU than its own handling (see Pump._spin, docs/benchmarks.md).
DEFAULT_BUSY_POLL: Final = 0.0002


def default_data_dir() -> str:
    """Where the embedded SQLite queue lives unless --data-dir says otherwise.

    ``$GEARSHIFT_DATA_DIR``, else ``$XDG_DATA_HOME/gearshift``, else
    ``~/.local/share/gearshift``: a per-user location that survives reboots (unlike /tmp)
    and needs no root (unlike /var/lib).
    """
    env = os.environ.get("GEARSHIFT_DATA_DIR")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                          "share")
    return os.path.join(base, "gearshift")


def default_handle_prefix() -> str:
    """gearmand's default: ``H:<host name>``."""
    return "H:" + socket.gethostname()


class StartupError(Exception):
    """The server cannot start (port in use, store unreachable...); message says why."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``gearshift serve`` can be told.

    Attributes:
        listen: addresses to bind; empty = every IPv4 and IPv6 address.
        log_format: "text" (people) or "json" (one object per line; server/_logs.py).
        daemon / user / syslog / file_descriptors / coredump: gearmand's process options
            (``-d``, ``-u``, ``--syslog``, ``-f``, ``--coredump``; see server/_daemon.py).
        store: "memory" or a store URL (``sqlite``, ``sqlite:///path``, ``postgresql://``...).
        max_packet_size: largest packet body accepted before the peer is disconnected.
        shutdown_timeout: on SIGTERM/SIGINT, how long running jobs get to finish.
        keep_results: seconds a background job's outcome is kept (0 = none).
        results_max_bytes / dead_max_bytes: budgets of kept outcomes and dead letters.
        retry: ``--retry`` policies, in the order given.
        max_queue: ``--max-queue`` caps, in the order given.
        admin_from: ``--admin-from`` networks (admin commands that change state).
        concurrency / rate / weight: ``--concurrency``, ``--rate``, ``--weight`` flow
            rules, in the order given (see broker/_flow.py).
        max_connections: open connections beyond which new ones are closed (0 = no limit).
        max_idle_functions: function records beyond which the idle ones are forgotten.
        max_memory: workload bytes of live jobs beyond which submissions are refused.
        queue_memory: bytes of jobs kept in memory beyond which a store that can page
            keeps queued jobs only (deep queues, broker/_deep.py); 0 = all in memory.
        acl: ``--acl``: identities and rights (None: everyone may do everything).
        tls: with ``--ssl``, the certificate, key and client CA (see server/_tls.py);
            None: the port speaks plaintext.
        http_port: the HTTP listener's port (metrics, JSON API, gearmand's HTTP protocol,
            health); None = no HTTP listener. See gearshift/http/.
        http_listen: addresses of the HTTP listener; empty = the same as ``listen``.
        http_protocol: gearmand's HTTP protocol (``-r http``) is on: ``POST /FUNCTION``
            (and GET, PUT, HEAD) on any path gearshift does not use itself submits a job.
        busy_poll: seconds the event loop keeps polling without sleeping after a read
            (0 = sleep at once); see ``Pump._spin``.
        packet_timeout: seconds a started packet has to arrive in full (0 = no limit).
        partial_packets_max: bytes all connections together may hold in partly received
            packets (0 = no limit).
        server_id: this server's name in a store shared by several servers ("" =
            ``<host name>:<port>``); see server/_cluster.py.
        lease: seconds a shared store's lease lasts without renewal (renewed every
            third of it); after that another server adopts this one's stored jobs.
    """

    listen: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    backlog: int = 1024
    job_retries: int = 0
    worker_wakeup: int = 1
    wakeup_timeout: float = 1.0
    job_handle_prefix: str = field(default_factory=default_handle_prefix)
    exceptions: bool = False
    keepalive: bool = False
    keepalive_idle: int = -1
    keepalive_interval: int = -1
    keepalive_count: int = -1
    log_file: str = "stderr"
    log_format: str = "text"
    verbose: str = "ERROR"
    pid_file: str | None = None
    daemon: bool = False
    user: str | None = None
    syslog: bool = False
    file_descriptors: int | None = None
    coredump: bool = False
    threads: int = 0
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    store: str = "sqlite"
    data_dir: str = field(default_factory=default_data_dir)
    allow_shutdown: bool = False
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    loop: str = "auto"
    busy_poll: float = DEFAULT_BUSY_POLL
    keep_results: float = 3600.0
    results_max_bytes: int = 64 << 20
    dead_max_bytes: int = 64 << 20
    retry: tuple[RetryPolicy, ...] = ()
    max_queue: tuple[QueueLimit, ...] = ()
    admin_from: tuple[Network, ...] = LOOPBACK
    concurrency: tuple[ConcurrencyRule, ...] = ()
    rate: tuple[RateRule, ...] = ()
    weight: tuple[WeightRule, ...] = ()
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_idle_functions: int = 10_000
    max_memory: int = 0
    queue_memory: int = 0
    acl: Acl | None = None
    tls: TlsConfig | None = None
    http_port: int | None = None
    http_listen: tuple[str, ...] = ()
    http_protocol: bool = False
    packet_timeout: float = DEFAULT_PACKET_TIMEOUT
    partial_packets_max: int = DEFAULT_PARTIAL_PACKETS_MAX
    server_id: str = ""
    lease: float = DEFAULT_LEASE
