"""systemd's readiness protocol (``Type=notify``): tell the service manager when the server
listens (``READY=1``) and when it begins to stop (``STOPPING=1``).

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), so it takes a few
lines of the socket module. python-systemd (libsystemd bindings, a C build) or sdnotify
would be a dependency for these lines, and neither is needed off systemd; when the
variable is unset nothing is sent and nothing is imported.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("gearshift.server")


def notify(*lines: str) -> bool:
    """Send ``lines`` (``"READY=1"``, ``"STATUS=..."``) to systemd; False without it.

    A failure to send is logged, never raised: a server that listens must not stop
    because its supervisor's socket went away.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode("utf-8", "replace"))
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", os.environ["NOTIFY_SOCKET"], exc)
        return False
    return True


class Notifier:
    """The READY=1 / STOPPING=1 pair, each sent at most once."""

    def __init__(self) -> None:
        self.stopping_sent = False

    def ready(self, status: str) -> None:
        notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self) -> None:
        if not self.stopping_sent:
            self.stopping_sent = True
            notify("STOPPING=1", "STATUS=shutting down")
