"""Process-level running of a server: logging, pid file, signals, event loop choice."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import signal
import sys

from gearshift._build import build_name
from gearshift._version import __version__
from gearshift.server._config import ServerConfig, StartupError
from gearshift.server._daemon import (
    Readiness,
    User,
    daemonize,
    drop_privileges,
    lookup_user,
    set_limits,
)
from gearshift.server._logs import ReopenableLog, log_banner
from gearshift.server._notify import Notifier
from gearshift.server._server import (
    Server,
    loop_factory,
    remove_pid_file,
    write_pid_file,
)
from gearshift.server._tls import server_context

log = logging.getLogger("gearshift.server")

#: gearmand's --verbose names -> logging levels.
VERBOSE_LEVELS = {
    "FATAL": logging.CRITICAL,
    "ALERT": logging.CRITICAL,
    "CRITICAL": logging.CRITICAL,
    "ERROR": logging.ERROR,
    "WARNING": logging.WARNING,
    "NOTICE": logging.INFO,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
}


async def _serve(config: ServerConfig, logs: ReopenableLog, user: User | None = None,
                 readiness: Readiness | None = None) -> int:
    readiness = readiness or Readiness()
    notifier = Notifier()
    server = Server(config)
    try:
        await server.start()
    except StartupError as exc:
        log.critical("%s", exc)
        readiness.failed(str(exc))
        return 1
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def request_stop(signame: str) -> None:
        notifier.stopping()
        log.warning("%s received: shutting down (running jobs get %.0fs)", signame,
                    config.shutdown_timeout)
        task = loop.create_task(server.close(graceful=True))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop, sig.name)
    loop.add_signal_handler(signal.SIGHUP, logs.open)
    try:
        if config.pid_file:
            try:
                write_pid_file(config.pid_file)
            except OSError as exc:
                raise StartupError(f"cannot write the pid file: {exc}") from None
        if user is not None:
            # Ports bound, store, log and pid file open: root is no longer needed.
            drop_privileges(user)
    except StartupError as exc:
        log.critical("%s", exc)
        readiness.failed(str(exc))
        await server.close(graceful=False)
        if config.pid_file:
            remove_pid_file(config.pid_file)
        return 1
    log_banner(__version__, build_name(), server.addresses(), config.store, config.data_dir,
               logs.root.level)
    readiness.ready()
    notifier.ready(f"listening on {', '.join(server.addresses())}")
    try:
        await server.wait_closed()
    finally:
        notifier.stopping()  # an admin shutdown, or after SIGTERM (sent once)
        if config.pid_file:
            remove_pid_file(config.pid_file)
    return server.exit_status


#: Young-generation threshold for the cyclic GC. Every queued job is a tracked object;
#: at CPython's default of 700 allocations, collections took 40% of the CPU time of
#: queueing a million background jobs (8.2 s -> 5.4 s with 50,000, measured in-process).
GC_GEN0_THRESHOLD = 50_000


def run(config: ServerConfig) -> int:
    """Run a server until SIGTERM/SIGINT or an admin shutdown; returns the exit status.

    Everything that can be checked before binding is (event loop, ``--user``, limits,
    log file), in the foreground, so its error reaches the terminal even with ``-d``.
    """
    gc.freeze()  # startup objects (modules, config) never need scanning again
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)
    level = VERBOSE_LEVELS.get(config.verbose.upper(), logging.ERROR)
    if config.daemon:
        config = _absolute_paths(config)  # the daemon works from /
    try:
        factory = loop_factory(config.loop)
        user = lookup_user(config.user) if config.user else None
        set_limits(config.file_descriptors, config.coredump)
        if config.tls is not None:
            server_context(config.tls)  # bad TLS files: said here, before detaching
        logs = ReopenableLog(config.log_file, level, syslog=config.syslog,
                             log_format=config.log_format)
    except StartupError as exc:
        print(f"gearshift: {exc}", file=sys.stderr)
        return 1
    # Startup failures are logged at CRITICAL; when that log is stderr, do not say it twice.
    readiness = Readiness(echo=config.log_file != "stderr")
    if config.daemon:
        detached = daemonize(log_to_stderr=config.log_file == "stderr")
        if isinstance(detached, int):
            return detached  # the original process: the daemon's report decided it
        readiness = detached
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(config, logs, user, readiness))


def _absolute_paths(config: ServerConfig) -> ServerConfig:
    """``config`` with its relative file paths resolved against the current directory."""
    log_file = config.log_file
    if log_file not in ("stderr", "none"):
        log_file = os.path.abspath(log_file)
    pid_file = os.path.abspath(config.pid_file) if config.pid_file else None
    tls = config.tls
    if tls is not None:
        tls = dataclasses.replace(
            tls, certificate=os.path.abspath(tls.certificate), key=os.path.abspath(tls.key),
            ca_file=os.path.abspath(tls.ca_file) if tls.ca_file else None)
    return dataclasses.replace(config, log_file=log_file, pid_file=pid_file,
                               data_dir=os.path.abspath(config.data_dir), tls=tls)
