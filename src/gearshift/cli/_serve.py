"""``gearshift serve``: run the job server, accepting gearmand's option spellings."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

from gearshift._units import parse_duration, parse_size
from gearshift.broker._access import parse_admin_from
from gearshift.broker._acl import Acl, parse_acl
from gearshift.broker._flow import parse_concurrency, parse_rate, parse_weight
from gearshift.broker._queue_limits import parse_max_queue
from gearshift.broker._retry import parse_retry
from gearshift.cli._gearmand_options import (
    ConfigError,
    add_gearmand_options,
    conninfo_to_url,
    http_port,
    refuse_unsupported,
    with_query,
)
from gearshift.cli._settings import add_config_options, render, resolve
from gearshift.cli._tls_options import add_serve_tls_options, tls_config_from_args
from gearshift.server._config import (
    DEFAULT_BUSY_POLL,
    DEFAULT_LEASE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PACKET_TIMEOUT,
    DEFAULT_PARTIAL_PACKETS_MAX,
    DEFAULT_PORT,
    DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_LEASE,
    MIN_LEASE,
    ServerConfig,
    default_data_dir,
    default_handle_prefix,
)
from gearshift.server._logs import LOG_FORMATS
from gearshift.server._run import VERBOSE_LEVELS

T = TypeVar("T")

QUEUE_TYPES = ("builtin", "libsqlite3", "sqlite", "postgres", "mysql", "redis", "libmemcached",
               "memcached")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve", help="run the job server",
        description="Run a Gearman-compatible job server. Options follow gearmand's spellings.",
    )
    p.add_argument("-L", "--listen", action="append", default=None, metavar="ADDRESS",
                   help="address to listen on (repeatable; default: localhost only -- "
                        "gearmand's default is every address: -L 0.0.0.0 -L ::)")
    p.add_argument("--acl", type=_arg(load_acl), default=None, metavar="FILE",
                   help="identities (TLS certificate subjects, HTTP bearer tokens) and "
                        "what each may submit, "
                        "work on and administer (TOML; see docs/operations.md); without "
                        "it everyone may do everything")
    p.add_argument("--admin-from", type=_arg(checked_admin_from), default="127.0.0.0/8,::1",
                   metavar="NETWORKS",
                   help="addresses allowed to use admin commands that change state "
                        "(cancel, maxqueue, create/drop function, shutdown, dead letters, "
                        "schedules): comma-separated addresses or CIDR networks, or 'any' "
                        "(default: loopback)")
    p.add_argument("-p", "--port", type=int, default=None,
                   help=f"TCP port (default {DEFAULT_PORT}, or $GEARMAND_PORT)")
    p.add_argument("-b", "--backlog", type=int, default=1024, help="listen backlog")
    p.add_argument("-j", "--job-retries", type=int, default=0, metavar="N",
                   help="fail a job after it was handed out N times without finishing "
                        "(0 = unlimited, as in gearmand 1.x/2.0)")
    p.add_argument("-w", "--worker-wakeup", type=int, default=1, metavar="N",
                   help="sleeping workers woken (NOOP) per queued job; 0 = all, as gearmand's "
                        "default (default here: 1, no thundering herd)")
    p.add_argument("--wakeup-timeout", type=float, default=1.0, metavar="SECONDS",
                   help="with -w N: when a function's jobs are still queued this long after "
                        "a wake-up while some of its workers sleep un-woken (a woken worker "
                        "did not come), wake them all; 0 = never (default 1)")
    p.add_argument("--job-handle-prefix", default=None,
                   help="job handle prefix (default H:<hostname>)")
    p.add_argument("--exceptions", action="store_true",
                   help="every connection starts with the 'exceptions' option on")
    p.add_argument("--keepalive", action="store_true", help="enable SO_KEEPALIVE")
    p.add_argument("--keepalive-idle", type=int, default=-1, metavar="SECONDS")
    p.add_argument("--keepalive-interval", type=int, default=-1, metavar="SECONDS")
    p.add_argument("--keepalive-count", type=int, default=-1, metavar="N")
    p.add_argument("-l", "--log-file", default="stderr",
                   help="log file path, 'stderr' (default) or 'none'; SIGHUP reopens it")
    p.add_argument("--log-format", choices=LOG_FORMATS, default="text", type=str.lower,
                   help="'text' (default) or 'json': one JSON object per line with time, "
                        "level, logger, message and the record's extra fields")
    p.add_argument("--verbose", default="ERROR", type=str.upper,
                   choices=list(VERBOSE_LEVELS), help="log level (gearmand names)")
    p.add_argument("-P", "--pid-file", default=None, help="write the server pid here")
    p.add_argument("-t", "--threads", type=int, default=0,
                   help="accepted for gearmand compatibility and ignored: gearshift runs one "
                        "event loop (run several servers for more cores)")
    p.add_argument("-R", "--round-robin", action="store_true",
                   help="accepted and ignored: round robin is always on (gearmand 2.0)")
    p.add_argument("--max-packet-size", type=int, default=None, metavar="BYTES",
                   help="largest packet body accepted (default 64 MiB)")
    p.add_argument("--store", default=None, metavar="URL",
                   help="where background jobs are kept: 'memory', 'sqlite' (default: "
                        "<data-dir>/queue.db), sqlite:///path, postgresql://..., mysql://..., "
                        "redis://..., memcached://host:port")
    p.add_argument("--queue-memory", type=_arg(parse_size), default=0, metavar="SIZE",
                   help="with a store that can page (SQLite, PostgreSQL, MySQL): keep about "
                        "SIZE of queued jobs in memory and the rest only in the store, read "
                        "back ahead of the workers (e.g. 256MiB; default 0: all in memory)")
    p.add_argument("--server-id", default="", metavar="NAME",
                   help="this server's name in a store shared by several servers "
                        "(PostgreSQL; default <host name>:<port>); unique per server")
    p.add_argument("--lease", type=_arg(parse_lease), default=DEFAULT_LEASE,
                   metavar="DURATION",
                   help="how long a server's lease on a shared store lasts unrenewed "
                        "(renewed every third of it); once it runs out another server "
                        f"adopts its jobs (default {DEFAULT_LEASE:g}s, "
                        f"{MIN_LEASE:g}s to {MAX_LEASE:g}s)")
    p.add_argument("--data-dir", default=None,
                   help=f"directory for the embedded store (default {default_data_dir()})")
    p.add_argument("-q", "--queue-type", choices=QUEUE_TYPES, type=str.lower, default=None,
                   help="gearmand-style store selection (alias of --store)")
    p.add_argument("--libsqlite3-db", default=None)
    p.add_argument("--libpq-conninfo", default=None)
    p.add_argument("--mysql-host", default="localhost")
    p.add_argument("--mysql-port", type=int, default=3306)
    p.add_argument("--mysql-user", default="root")
    p.add_argument("--mysql-password", default="")
    p.add_argument("--mysql-db", default="gearman")
    p.add_argument("--redis-server", default="127.0.0.1")
    p.add_argument("--redis-port", type=int, default=6379)
    p.add_argument("--redis-password", default="")
    p.add_argument("--libmemcached-servers", default="127.0.0.1:11211")
    p.add_argument("--allow-shutdown", action="store_true",
                   help="honour the admin 'shutdown [graceful]' command (off: anyone who can "
                        "connect could stop the server, which is why gearmand removed it)")
    p.add_argument("--shutdown-timeout", type=float, default=DEFAULT_SHUTDOWN_TIMEOUT,
                   help="seconds running jobs get to finish on SIGTERM/SIGINT")
    p.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                   help="event loop (auto: uvloop when installed)")
    p.add_argument("--busy-poll", type=_arg(parse_duration), metavar="DURATION",
                   default=DEFAULT_BUSY_POLL,
                   help="after each read, keep polling the sockets without sleeping for "
                        "this long: a job's next packet is seen at once instead of after "
                        "the CPU wakes up (depth-1 round trips ~2x faster here), for one "
                        "core kept busy while jobs keep coming; 0 = sleep at once "
                        "(default 200us)")
    outcomes = p.add_argument_group("job outcomes, retries and dead letters")
    outcomes.add_argument("--keep-results", type=_arg(parse_duration), default=3600.0,
                          metavar="DURATION",
                          help="keep a background job's outcome this long after it ended "
                               "(e.g. 30m, 1h, 7d; 0 keeps none; default 1h)")
    outcomes.add_argument("--results-max", type=_arg(parse_size), default=64 << 20,
                          metavar="SIZE", help="memory budget of kept outcomes; the oldest "
                          "go first beyond it (default 64MiB)")
    outcomes.add_argument("--dead-letters-max", type=_arg(parse_size), default=64 << 20,
                          metavar="SIZE", help="memory budget of dead letters; the oldest "
                          "are dropped, with a warning, beyond it (default 64MiB)")
    outcomes.add_argument("--retry", type=_arg(parse_retry), action="append", default=[],
                          metavar="FUNC=ATTEMPTS[:BASE[:MAX]]",
                          help="retry a function's failed background jobs with exponential "
                               "backoff, up to ATTEMPTS in all (e.g. 'resize=5:2s:10m'; "
                               "FUNC may be a glob, '*' for every function; repeatable)")
    limits = p.add_argument_group("limits that protect the server")
    limits.add_argument("--max-memory", type=_arg(parse_size), default=0, metavar="SIZE",
                        help="workload bytes of queued and running jobs beyond which new "
                             "submissions get ERROR QUEUE_ERROR instead of growing the "
                             "server (e.g. 2GiB; default 0: no limit)")
    limits.add_argument("--max-idle-functions", type=int, default=10_000, metavar="N",
                        help="once there are N function records, forget those with no "
                             "jobs, workers or settings (gearmand keeps every name ever "
                             "mentioned; default 10000)")
    limits.add_argument("--max-queue", type=_arg(parse_max_queue), action="append", default=[],
                        metavar="FUNC=N|FUNC=HIGH,NORMAL,LOW",
                        help="cap a function's jobs from its first job on, per priority (as "
                             "admin 'maxqueue'; FUNC may be a glob, '*' for every function; "
                             "0 = unlimited; repeatable)")
    limits.add_argument("--max-connections", type=_arg(_count), metavar="N",
                        default=DEFAULT_MAX_CONNECTIONS,
                        help="open connections beyond which new ones are accepted and closed "
                             f"at once (0 = no limit; default {DEFAULT_MAX_CONNECTIONS})")
    limits.add_argument("--packet-timeout", type=_arg(parse_duration), metavar="SECONDS",
                        default=DEFAULT_PACKET_TIMEOUT,
                        help="a connection that leaves a started packet incomplete this long "
                             "gets ERROR TIMEOUT and is closed (e.g. 30, 2m; 0 = no limit; "
                             f"default {DEFAULT_PACKET_TIMEOUT:g}s)")
    limits.add_argument("--partial-packets-max", type=_arg(parse_size), metavar="SIZE",
                        default=DEFAULT_PARTIAL_PACKETS_MAX,
                        help="bytes all connections together may hold in partly received "
                             "packets; the read that would pass it closes its connection "
                             "with ERROR ARGUMENT_TOO_LARGE (0 = no limit; default 256MiB)")
    flow = p.add_argument_group(
        "flow control (FUNC may be a glob; repeatable; change them at run time with the "
        "admin commands pause, resume, limit: see docs/operations.md)")
    flow.add_argument("--concurrency", type=_arg(parse_concurrency), action="append",
                      default=[], metavar="FUNC=N",
                      help="at most N jobs of FUNC running at once across all workers; "
                           "further jobs stay queued (0 = paused)")
    flow.add_argument("--rate", type=_arg(parse_rate), action="append", default=[],
                      metavar="FUNC=N/s|N/m|N/h",
                      help="at most N job starts of FUNC per second, minute or hour (a "
                           "token bucket: bursts of up to N)")
    flow.add_argument("--weight", type=_arg(parse_weight), action="append", default=[],
                      metavar="FUNC=W",
                      help="a worker doing several functions takes up to W jobs of FUNC in "
                           "a row before the next function's turn (default 1: round robin)")
    add_serve_tls_options(p)
    http = p.add_argument_group("HTTP listener: metrics, JSON API, gearmand's HTTP protocol "
                                "(needs the 'http' extra; see docs/operations.md)")
    http.add_argument("--http-port", type=int, default=None, metavar="PORT",
                      help="open the HTTP listener on PORT: /metrics, /api/, /healthz, "
                           "/readyz; with '-r http' (which alone means port 8080, as in "
                           "gearmand) also gearmand's HTTP protocol: POST /FUNCTION submits")
    http.add_argument("--http-listen", action="append", default=[], metavar="ADDRESS",
                      help="address of the HTTP listener (repeatable; default: the same "
                           "addresses as the Gearman port)")
    add_gearmand_options(p)
    add_config_options(p)
    p.set_defaults(func=run_serve, serve_parser=p)


def checked_admin_from(text: str) -> str:
    """``--admin-from`` checked now (a bad network stops startup naming it), kept as
    text: --print-config shows it as it was written."""
    parse_admin_from(text)
    return text


def load_acl(path: str) -> Acl:
    """``--acl FILE``: read and parse it now, so a bad file stops startup with its name."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ValueError(f"--acl {path}: {exc.strerror or exc}") from None
    return parse_acl(text, path)


#: Where ``gearshift serve`` listens without ``-L``: loopback only, a safe default for a
#: server whose admin port lists every job (gearmand listens on every address).
DEFAULT_LISTEN = ("localhost",)


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Wrap a parser so argparse prints its own message (naming the text) on bad input."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _count(text: str) -> int:
    """A whole number >= 0; ValueError naming the text otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def parse_lease(text: str) -> float:
    """A --lease duration within its bounds."""
    lease = parse_duration(text)
    if not MIN_LEASE <= lease <= MAX_LEASE:
        raise ValueError(f"--lease {text!r} must be between {MIN_LEASE:g}s and "
                         f"{MAX_LEASE:g}s")
    return lease


def store_url(args: argparse.Namespace) -> str:
    """The store URL from --store or from gearmand's -q option family."""
    if args.store is not None:
        return str(args.store)
    queue = args.queue_type
    if queue is None:
        return "sqlite"
    if queue == "builtin":
        return "memory"
    if queue in ("libsqlite3", "sqlite"):
        url = "sqlite"
        if args.libsqlite3_db:
            url = f"sqlite:///{os.path.abspath(args.libsqlite3_db)}"
        return with_query(url, table=args.libsqlite3_table)
    if queue == "postgres":
        return with_query(conninfo_to_url(args.libpq_conninfo or ""), table=args.libpq_table)
    if queue == "mysql":
        auth = quote(args.mysql_user) + (":" + quote(args.mysql_password)
                                         if args.mysql_password else "")
        return with_query(f"mysql://{auth}@{args.mysql_host}:{args.mysql_port}/{args.mysql_db}",
                          table=args.mysql_table)
    if queue == "redis":
        auth = f":{quote(args.redis_password)}@" if args.redis_password else ""
        return with_query(f"redis://{auth}{args.redis_server}:{args.redis_port}",
                          prefix=args.redis_prefix)
    return with_query(f"memcached://{args.libmemcached_servers.split(',')[0]}",
                      prefix=args.libmemcached_prefix)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    port = args.port
    if port is None:
        port = int(os.environ.get("GEARMAND_PORT") or DEFAULT_PORT)
    kwargs = {}
    if args.max_packet_size is not None:
        kwargs["max_packet_size"] = args.max_packet_size
    return ServerConfig(
        listen=tuple(args.listen or ()) or DEFAULT_LISTEN,
        admin_from=parse_admin_from(args.admin_from),
        port=port,
        backlog=args.backlog,
        job_retries=args.job_retries,
        worker_wakeup=args.worker_wakeup,
        wakeup_timeout=args.wakeup_timeout,
        job_handle_prefix=args.job_handle_prefix or default_handle_prefix(),
        exceptions=args.exceptions,
        keepalive=args.keepalive,
        keepalive_idle=args.keepalive_idle,
        keepalive_interval=args.keepalive_interval,
        keepalive_count=args.keepalive_count,
        log_file=args.log_file,
        log_format=args.log_format,
        verbose=args.verbose,
        pid_file=args.pid_file,
        daemon=args.daemon,
        user=args.user,
        syslog=args.syslog,
        file_descriptors=args.file_descriptors,
        coredump=args.coredump,
        threads=args.threads,
        store=store_url(args),
        data_dir=args.data_dir or default_data_dir(),
        allow_shutdown=args.allow_shutdown,
        shutdown_timeout=args.shutdown_timeout,
        loop=args.loop,
        busy_poll=args.busy_poll,
        keep_results=args.keep_results,
        results_max_bytes=args.results_max,
        dead_max_bytes=args.dead_letters_max,
        retry=tuple(args.retry),
        max_queue=tuple(args.max_queue),
        concurrency=tuple(args.concurrency),
        rate=tuple(args.rate),
        weight=tuple(args.weight),
        max_connections=args.max_connections,
        max_idle_functions=args.max_idle_functions,
        max_memory=args.max_memory,
        queue_memory=args.queue_memory,
        acl=args.acl,
        tls=tls_config_from_args(args),
        http_port=http_port(args),
        http_listen=tuple(args.http_listen),
        http_protocol=args.protocol is not None,
        packet_timeout=args.packet_timeout,
        partial_packets_max=args.partial_packets_max,
        server_id=args.server_id,
        lease=args.lease,
        **kwargs,
    )


def run_serve(args: argparse.Namespace) -> int:
    from gearshift.server import run

    if args.version:
        from gearshift.cli import version_text

        print(version_text())
        return 0
    try:
        args, sources = resolve(args.serve_parser, args, _serve_argv(args), os.environ)
        refuse_unsupported(args)
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"gearshift: {exc}", file=sys.stderr)
        return 1
    if args.print_config:
        sys.stdout.write(render(args.serve_parser, args, sources,
                                dataclasses.asdict(config) | {"store": config.store}))
        return 0
    return run(config)


def _serve_argv(args: argparse.Namespace) -> list[str]:
    """The command line's tokens after ``serve`` (parsed again to see which were given)."""
    argv: list[str] = list(getattr(args, "cli_argv", None) or sys.argv[1:])
    return argv[argv.index("serve") + 1:] if "serve" in argv else argv
