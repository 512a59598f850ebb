"""Blocking implementations (sockets, threads) of the primitives in ``asyncio_``."""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import select
import selectors
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from ssl import SSLContext
from types import FrameType
from typing import Any

from gearshift.client._cancel import Cancellation, JobCancelled, timeout_reason
from gearshift.client._errors import GearmanError, GearmanTimeout

READ_SIZE = 256 * 1024


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (monotonic); raises GearmanTimeout when none are."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise GearmanTimeout("timed out")
    return left


class Stream:
    """One TCP connection (a blocking socket)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def read(self, deadline: float | None) -> bytes:
        """Some bytes, or b"" at end of stream.

        The socket stays in blocking mode and the deadline is waited for with poll():
        a socket timeout is per-socket state, so setting one here would race with a
        thread writing a request on the same socket (a shared Client) and leave one of
        them in the wrong mode (seen as BlockingIOError mid-read).
        """
        timeout = remaining(deadline)
        if timeout is not None and not wait_readable(self._sock, timeout):
            raise GearmanTimeout("timed out waiting for the server")
        return self._sock.recv(READ_SIZE)

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def buffered(self) -> bool:
        """Whether bytes were received but not yet read (only TLS holds any)."""
        return False

    def abort(self) -> None:
        """Shut the socket down, waking a reader blocked in another thread."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._sock.close()


class TlsStream(Stream):
    """One TLS connection: a non-blocking SSLSocket whose every SSL call holds a lock.

    OpenSSL forbids using one connection from two threads at once (a read in one thread
    and a write in another can crash the process), and a shared Client reads in one
    thread while another writes a request. A blocking read under a lock would make every
    writer wait for a reply, so the socket is non-blocking: each SSL call holds the lock
    only for its own short work, and the waiting (for bytes, or for room to write) is
    done outside it with poll().
    """

    def __init__(self, sock: ssl.SSLSocket) -> None:
        super().__init__(sock)
        self._tls = sock
        self._lock = threading.Lock()
        sock.setblocking(False)

    def read(self, deadline: float | None) -> bytes:
        while True:
            with self._lock:
                try:
                    return self._tls.recv(READ_SIZE)
                except ssl.SSLWantReadError:
                    events = select.POLLIN
                except ssl.SSLWantWriteError:
                    events = select.POLLOUT
                except ssl.SSLZeroReturnError:  # the server's close_notify
                    return b""
            if not wait_for(self._tls, events, remaining(deadline)):
                raise GearmanTimeout("timed out waiting for the server")

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            with self._lock:
                try:
                    view = view[self._tls.send(view):]
                    continue
                except ssl.SSLWantWriteError:
                    events = select.POLLOUT
                except ssl.SSLWantReadError:
                    events = select.POLLIN
            wait_for(self._tls, events, None)

    def buffered(self) -> bool:
        return self._tls.pending() > 0

    def abort(self) -> None:
        # socket.shutdown, not SSLSocket.shutdown: the latter also drops the SSL object,
        # under the feet of the reader this is meant to wake.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._tls, socket.SHUT_RDWR)


def open_stream(host: str, port: int, deadline: float | None,
                tls: SSLContext | None = None) -> Stream:
    """Connect (and with ``tls``, complete the TLS handshake) before ``deadline``."""
    try:
        sock = socket.create_connection((host, port), timeout=remaining(deadline))
    except TimeoutError as exc:
        raise GearmanTimeout(f"timed out connecting to {host}:{port}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls is None:
        sock.settimeout(None)  # blocking from here on; reads wait with wait_readable()
        return Stream(sock)
    try:
        sock.settimeout(remaining(deadline))
        return TlsStream(tls.wrap_socket(sock, server_hostname=host))
    except TimeoutError as exc:
        sock.close()
        raise GearmanTimeout(f"timed out in the TLS handshake with {host}:{port}") from exc
    except BaseException:
        sock.close()
        raise


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` has bytes (or EOF) within ``timeout`` seconds."""
    return wait_for(sock, select.POLLIN, timeout)


def wait_for(sock: socket.socket, events: int, timeout: float | None) -> bool:
    """Whether ``sock`` is ready for ``events`` (POLLIN/POLLOUT) within ``timeout`` s."""
    if _poll is None:  # platforms without poll(): select() (fds < FD_SETSIZE only)
        rlist = [sock] if events & select.POLLIN else []
        wlist = [sock] if events & select.POLLOUT else []
        return any(select.select(rlist, wlist, [], timeout)[:2])
    poller = _poll()
    poller.register(sock, events)
    return bool(poller.poll(None if timeout is None else timeout * 1000.0))


_poll = getattr(select, "poll", None)


def read_any(streams: Sequence[Stream],
             deadline: float | None) -> list[tuple[int, bytes | OSError]]:
    """Wait until at least one stream has bytes (or closed); return (index, data|error)."""
    if len(streams) == 1:
        try:
            return [(0, streams[0].read(deadline))]
        except GearmanTimeout:
            raise
        except OSError as exc:
            return [(0, exc)]
    # TLS may hold decrypted bytes the socket no longer signals: read those first.
    indexes = [i for i, stream in enumerate(streams) if stream.buffered()]
    if not indexes:
        with selectors.DefaultSelector() as selector:
            for i, stream in enumerate(streams):
                selector.register(stream.socket, selectors.EVENT_READ, i)
            indexes = [key.data for key, _ in selector.select(remaining(deadline))]
    if not indexes:
        raise GearmanTimeout("timed out waiting for the servers")
    out: list[tuple[int, bytes | OSError]] = []
    for index in indexes:
        try:
            out.append((index, streams[index].read(None)))
        except OSError as exc:
            out.append((index, exc))
    return out


class Lock:
    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, deadline: float | None) -> None:
        timeout = remaining(deadline)
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise GearmanTimeout("timed out waiting for the connection")

    def release(self) -> None:
        self._lock.release()


class Event:
    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        """True when set, False when ``timeout`` seconds passed first."""
        return self._event.wait(timeout)


def sleep(seconds: float) -> None:
    """Pause this thread (polling loops such as ``result(wait=...)``)."""
    time.sleep(seconds)


def run_all(jobs: Sequence[Callable[[], None]]) -> None:
    """Run the jobs concurrently (one thread each) until all return; re-raise the first error."""
    if len(jobs) == 1:
        jobs[0]()
        return
    errors: list[BaseException] = []

    def guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,), daemon=True) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.5)  # a timed join keeps the main thread responsive to signals
    if errors:
        raise errors[0]


def call_handler(handler: Callable[..., object], *args: object) -> object:
    """Call a job function in this thread; coroutine functions need the asyncio worker."""
    result = handler(*args)
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        raise TypeError("coroutine functions need AsyncWorker; Worker runs plain functions")
    return result


def run_stoppable(control: Cancellation, time_limit: float | None,
                  handler: Callable[..., object], *args: object) -> object:
    """Call a job function that ``control`` can stop, and stop it after ``time_limit`` s.

    Without a callback of the job's own, stopping raises :class:`JobCancelled` in this
    thread (``PyThreadState_SetAsyncExc``): it is raised at the next Python instruction
    the function runs, so Python code is interrupted, while a blocking C call (a
    ``time.sleep``, a socket read) finishes first. Job functions that wait on something
    external should register ``job.on_cancel`` to end that wait.
    """
    thread = threading.get_ident()

    def interrupt() -> None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread),
                                                   ctypes.py_object(JobCancelled))

    control.set_interrupt(interrupt)
    timer = None
    if time_limit is not None:
        timer = threading.Timer(time_limit, control.cancel, (timeout_reason(time_limit),))
        timer.daemon = True
        timer.start()
    try:
        try:
            return call_handler(handler, *args)
        finally:
            # An interrupt already sent is raised at the latest in this call, still
            # inside the outer try; after it, none can be sent.
            control.finish()
            if timer is not None:
                timer.cancel()
    except JobCancelled:
        raise JobCancelled(control.reason or "cancelled") from None


class Watch:
    """Reads a worker's connection while its job runs, handing each packet to
    ``on_packet`` (a server's "stop this job"), from one watchdog thread per process.

    It starts only after ``after`` seconds, so a short job costs two set operations and
    no thread switch; the watchdog polls the sockets of longer jobs. The watchdog reads
    a socket only under this watch's lock and while it is active, and :meth:`stop`
    takes the lock: once it returns, the worker's thread owns the connection again.
    """

    def __init__(self, conn: Any, on_packet: Callable[[Any], object], after: float) -> None:
        self.conn = conn
        self.on_packet = on_packet
        self.due = time.monotonic() + after
        self.lock = threading.Lock()
        self.active = True
        _WATCHDOG.add(self)

    def stop(self) -> None:
        with self.lock:
            self.active = False
        _WATCHDOG.discard(self)

    def read_once(self) -> None:
        """Read what the poll said is there (watchdog thread, under ``lock``)."""
        for packet in self.conn.feed(self.conn.stream.read(time.monotonic() + 1.0)):
            self.on_packet(packet)


class _Watchdog:
    """The thread behind :class:`Watch`: idle (blocked) while nothing is watched."""

    POLL = 0.1  # seconds between looks at which watches are due

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: set[Watch] = set()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        with self._lock:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="gearshift-watchdog")
                self._thread.start()
        self._wakeup.set()

    def discard(self, watch: Watch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            self._wakeup.clear()
            with self._lock:
                watches = list(self._watches)
            if not watches:
                self._wakeup.wait()
                continue
            now = time.monotonic()
            due = [w for w in watches if w.due <= now and w.active]
            if not due:
                self._wakeup.wait(max(0.0, min(w.due for w in watches) - now))
                continue
            self._poll(due)

    def _poll(self, due: list[Watch]) -> None:
        poller = select.poll()
        by_fd = {}
        for watch in due:
            try:
                fd = watch.conn.stream.socket.fileno()
            except (OSError, AttributeError):
                continue
            if fd >= 0:
                by_fd[fd] = watch
                poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(self.POLL * 1000):
            watch = by_fd[fd]
            with watch.lock:
                if not watch.active:
                    continue
                try:
                    watch.read_once()
                except (OSError, GearmanError):  # lost: the worker's thread will see it
                    watch.active = False


_WATCHDOG = _Watchdog()


def add_stop_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM/SIGINT (main thread only); returns a restore function."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        callback()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, previous in old.items():
            signal.signal(sig, previous)

    return restore
