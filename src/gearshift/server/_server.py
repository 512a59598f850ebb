"""The asyncio shell around the broker: listeners, storage, admin shutdown and graceful
close. The only module that mixes sockets, the broker and storage; the per-read work
(socket callbacks, output flushing, timer arming) is in the compiled :mod:`._wire`.

Resource handling: :meth:`Server.start` binds every listener and replays the store before
the first connection is accepted; :meth:`Server.close` stops accepting, lets running jobs
finish for ``shutdown_timeout`` seconds, closes every connection and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, cast

from gearshift.broker import Broker, BrokerConfig, Peer, QueueLimits, RetryPolicies
from gearshift.broker._acl import Acl, certificate_subject
from gearshift.broker._flow import FlowRules
from gearshift.server._config import ServerConfig, StartupError
from gearshift.server._durable import DurableStore, open_durable
from gearshift.server._partials import PacketDeadline
from gearshift.server._tls import server_context
from gearshift.server._wire import Pump

log = logging.getLogger("gearshift.server")


class Server:
    """A running gearshift job server.

    Example::

        server = Server(ServerConfig(port=4730, store="memory"))
        await server.start()
        await server.wait_closed()   # until close() or a shutdown request
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.broker = Broker(BrokerConfig(
            job_retries=config.job_retries,
            worker_wakeup=config.worker_wakeup,
            wakeup_timeout=config.wakeup_timeout,
            exceptions=config.exceptions,
            handle_prefix=(config.job_handle_prefix + ":").encode(),
            allow_shutdown=config.allow_shutdown,
            verbose=config.verbose,
            keep_results=config.keep_results,
            results_max_bytes=config.results_max_bytes,
            dead_max_bytes=config.dead_max_bytes,
            retry=RetryPolicies(list(config.retry)),
            max_queue=QueueLimits(list(config.max_queue)),
            admin_from=config.admin_from,
            max_idle_functions=config.max_idle_functions,
            max_memory=config.max_memory,
            flow=FlowRules(list(config.concurrency), list(config.rate), list(config.weight)),
            # queue-wait and run-time histograms: /metrics on the HTTP port reads them
            timing=config.http_port is not None,
        ))
        # Failures, retries, dead letters and dropped jobs, as the broker notes them.
        self.broker.notify = lambda level, text: log.log(level, "%s", text)
        self.broker.trace = log.isEnabledFor(logging.DEBUG)
        #: the per-read and per-iteration work (compiled): connections, flushing, timers
        self.pump = Pump(self.broker, config.max_packet_size, self.tune_socket,
                         self._shutdown_requested, config.max_connections,
                         config.partial_packets_max, config.busy_poll)
        if config.acl is not None:
            self.pump.identify = _identifier(config.acl)
        #: --packet-timeout's sweep (None: no deadline)
        self.deadline = (PacketDeadline(self.pump, config.packet_timeout)
                         if config.packet_timeout > 0 else None)
        self.durable: DurableStore | None = None
        self._servers: list[asyncio.Server] = []
        self._closed = asyncio.Event()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._accept_errors: AcceptErrorLog | None = None
        #: the HTTP listener (gearshift.http), when --http-port was given
        self.http: Any = None
        #: what ``gearshift serve`` exits with once closed: 3 after being fenced
        self.exit_status = 0

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the store, replay it, then listen. Raises StartupError with a reason."""
        # TLS files first: a wrong one must stop startup before the store is touched.
        tls: dict[str, Any] = {}
        if self.config.tls is not None:
            tls = {"ssl": server_context(self.config.tls),
                   "ssl_handshake_timeout": self.config.tls.handshake_timeout}
        if self.config.http_port is not None:
            from gearshift.http import missing_dependency

            missing = missing_dependency()
            if missing:
                raise StartupError(missing)
        self._loop = self.pump.loop = asyncio.get_running_loop()
        self._accept_errors = AcceptErrorLog(self._loop.get_exception_handler())
        self._loop.set_exception_handler(self._accept_errors)
        if self.config.store != "memory":
            self.durable = await open_durable(self.config, self.broker, self.pump.after_batch,
                                              self._fenced)
        elif self.config.queue_memory:
            log.warning("--queue-memory is ignored: the memory store keeps every queued job "
                        "in memory")
        hosts: list[str] | None = list(self.config.listen) or None
        try:
            for host in hosts or [None]:  # type: ignore[list-item]
                # The connection is a compiled class that implements asyncio.Protocol's
                # methods without subclassing it (see _wire): hence the cast.
                srv = await self._loop.create_server(
                    cast(Callable[[], asyncio.BaseProtocol], self.pump.connection),
                    host=host, port=self.config.port,
                    backlog=self.config.backlog, reuse_address=True, **tls,
                )
                self._servers.append(srv)
        except OSError as exc:
            await self._close_listeners()
            if self.durable is not None:
                await self.durable.close()
            raise StartupError(
                f"cannot listen on {hosts or 'all addresses'} port {self.config.port}: {exc}"
            ) from exc
        log.info("listening on %s%s", ", ".join(self.addresses()), " (TLS only)" if tls else "")
        if not tls and any(not _is_loopback(sock.getsockname()[0])
                           for srv in self._servers for sock in srv.sockets):
            log.warning("listening beyond loopback without TLS: anyone who can reach the "
                        "port can submit, work and read jobs (see --ssl, --admin-from)")
        if self.config.http_port is not None:
            await self._start_http()
            # The HTTP stack (aiohttp, prometheus-client, their modules and the app) is
            # imported here, after run()'s gc.freeze(), so its objects stayed in the
            # collector's view: bg jobs/s with the listener on were 0.961-0.975 of off in
            # four runs without this, 0.984-0.985 in two with it (metrics_cost.py).
            gc.freeze()
        # Replayed jobs' epoch and retry times, schedules and kept outcomes need the
        # timer armed now, not when the first connection sends something.
        self.pump.after_batch()
        if self.deadline is not None:
            self.deadline.ensure_running()

    async def _start_http(self) -> None:
        from gearshift.http._app import HttpListener

        self.http = HttpListener(self)
        try:
            await self.http.start()
        except OSError as exc:
            await self.http.close()
            await self._close_listeners()
            if self.durable is not None:
                await self.durable.close()
            hosts = list(self.config.http_listen or self.config.listen) or "all addresses"
            raise StartupError(f"cannot listen for HTTP on {hosts} port "
                               f"{self.config.http_port}: {exc}") from exc
        log.info("HTTP listening on port(s) %s", self.http.ports)

    def addresses(self) -> list[str]:
        """Where the Gearman port listens, as ``host:port`` (``[::1]:4730`` for IPv6)."""
        found = []
        for srv in self._servers:
            for sock in srv.sockets:
                host, port = sock.getsockname()[:2]
                found.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        return found

    def not_ready(self) -> str:
        """Why the server should not be sent work now (``/readyz``), or ``""``."""
        if self._closing:
            return "shutting down"
        if not self._servers:
            return "not listening"
        if self.durable is not None and not self.durable.committer.reachable:
            return f"the store ({self.durable.store.description}) is failing writes"
        return ""

    @property
    def ports(self) -> list[int]:
        """The bound ports (useful with port 0)."""
        return sorted({s.getsockname()[1] for srv in self._servers for s in srv.sockets})

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def close(self, graceful: bool = True) -> None:
        """Stop accepting; with ``graceful``, let running jobs finish up to the deadline."""
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        self.pump.closing = True
        await self._close_listeners()
        if graceful:
            self.broker.draining = True
            deadline = asyncio.get_running_loop().time() + self.config.shutdown_timeout
            # Polled: the broker has no event to await (it does no I/O by design).
            while self.broker.running_jobs and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if self.broker.running_jobs:
                log.warning("shutdown: %d jobs still running after %.1fs; closing anyway",
                            self.broker.running_jobs, self.config.shutdown_timeout)
        if self.http is not None:
            await self.http.close()  # answers what finished; the rest are cut off
        self.pump.flush()
        for link in list(self.pump.links.values()):
            link.transport.close()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        self.pump.cancel_timer()
        if self.deadline is not None:
            self.deadline.stop()
        if self._loop is not None and self._accept_errors is not None:
            self._loop.set_exception_handler(self._accept_errors.previous)
        if self.durable is not None:
            await self.durable.close()
        self._closed.set()

    async def _close_listeners(self) -> None:
        # close() stops accepting at once; wait_closed() is not awaited because on 3.12+
        # it also waits for every open connection, which closing does below.
        for srv in self._servers:
            srv.close()
        self._servers = []

    # -------------------------------------------------------------- per-batch work

    def tune_socket(self, sock: socket.socket) -> None:
        """Per-connection socket options: no Nagle delay, optional keepalive."""
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.config.keepalive:
            set_keepalive(sock, self.config.keepalive_idle, self.config.keepalive_interval,
                          self.config.keepalive_count)

    def _fenced(self, exc: Exception) -> None:
        """Another server adopted this one's stored jobs (its lease was lost): stop at
        once, handing out nothing more (server/_cluster.py says why)."""
        if self.exit_status:
            return
        self.exit_status = 3
        self.broker.lease_until = 1.0  # long past: no job is handed out from now on
        log.critical("%s; stopping now: this server's stored jobs belong to another "
                     "server (exit status 3)", exc)
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self.close(graceful=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _shutdown_requested(self, how: str) -> None:
        """An admin ``shutdown`` (or ``shutdown graceful``) was accepted."""
        log.warning("admin shutdown requested (%s)", how)
        loop = self._loop or asyncio.get_running_loop()
        task = loop.create_task(self.close(graceful=how == "graceful"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class AcceptErrorLog:
    """A loop exception handler that logs accept() running out of descriptors once a
    second instead of once per attempt.

    asyncio reports every failed ``accept()`` (EMFILE, ENFILE, ENOBUFS, ENOMEM) through
    the loop's exception handler with a traceback; out of descriptors under a connection
    storm, ``--loop asyncio`` wrote ~56,000 of them in 8 s, filling the disk the log is
    on while serving nobody better. Everything else goes to the handler that was
    installed before (or the loop's default).
    """

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]
                 | None) -> None:
        self.previous = previous
        self.suppressed = 0  # accept errors not logged since the last warning
        self.logged_at = -1e9  # monotonic time of that warning

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != self.MESSAGE:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self.logged_at < 1.0:
            self.suppressed += 1
            return
        log.warning("cannot accept connections: %s (%d more such errors in the last "
                    "second); raise 'ulimit -n' or lower --max-connections",
                    context.get("exception"), self.suppressed)
        self.suppressed = 0
        self.logged_at = now


def set_keepalive(sock: socket.socket, idle: int, interval: int, count: int) -> None:
    """SO_KEEPALIVE plus the TCP_KEEP* knobs that were given (>0), where supported."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval),
                        ("TCP_KEEPCNT", count)):
        option = getattr(socket, name, None)
        if option is not None and value > 0:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def write_pid_file(path: str) -> None:
    with open(path, "w") as fh:
        fh.write(f"{os.getpid()}\n")


def remove_pid_file(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def loop_factory(choice: str) -> Any:
    """The event loop constructor: uvloop when available (or asked for), else asyncio's."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop

            return uvloop.new_event_loop
        except ImportError:
            if choice == "uvloop":
                raise StartupError("--loop uvloop: uvloop is not installed") from None
    return asyncio.new_event_loop


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _identifier(acl: Acl) -> Callable[[Any, Peer], None]:
    """--acl: give each new connection the rights of its TLS certificate's subject."""
    def identify(transport: Any, peer: Peer) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        peercert = ssl_object.getpeercert() if ssl_object is not None else None
        peer.rights = acl.rights_for(certificate_subject(peercert))
    return identify
