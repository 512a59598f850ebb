"""A loopback TCP forwarder the store-down tests can cut, stall and restore.

The shared PostgreSQL and Redis services must keep running for everyone else, so a
test points the server's store URL at this proxy instead and takes the "database"
away by cutting the proxy: open connections are reset and new ones are closed as soon
as they are accepted. ``stall`` models a slow database: bytes are held, not lost,
until ``restore``.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


class Proxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` on threads; stop with :meth:`close`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._up = True
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._held = 0
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="proxy-accept", daemon=True)
        self._accepter.start()

    # ------------------------------------------------------------------ controls

    def cut(self) -> None:
        """The service goes away: reset every connection, refuse new ones."""
        with self._lock:
            self._up = False
            conns, self._conns = self._conns, set()
        for conn in conns:
            _reset(conn)
        self._flowing.set()   # stalled pumps wake up and find their sockets gone

    def stall(self) -> None:
        """The service hangs: connections stay open but nothing is forwarded."""
        self._flowing.clear()

    def restore(self) -> None:
        """The service is back."""
        with self._lock:
            self._up = True
        self._flowing.set()

    def held(self) -> int:
        """How many reads are being held by a stall (e.g. the server's pending write)."""
        with self._lock:
            return self._held

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._accepter.join(5)
        self.listener.close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ machinery

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                up = self._up
            if not up:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if not self._flowing.is_set():
                    with self._lock:
                        self._held += 1
                    self._flowing.wait()
                    with self._lock:
                        self._held -= 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _reset(src)
            _reset(dst)


def _reset(sock: socket.socket) -> None:
    """Drop a connection at once; shutdown() also wakes a pump blocked in recv()."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sock.close()
