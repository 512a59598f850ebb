"""Safe defaults: without ``-L`` the server listens on loopback only, and listening
beyond loopback without TLS is logged as a warning (issue 15)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gearshift.testing import free_port, wait_until


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets in LISTEN state on ``port`` (Linux /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hexport = fields[1].split(":")
            if fields[3] == "0A" and int(hexport, 16) == port:
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@contextmanager
def serve(*args: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gearshift", "serve", "-p", str(port),
                             "--store", "memory", "--verbose", "WARNING", *args],
                            stderr=subprocess.PIPE)
    try:
        wait_until(lambda: listening_addresses(port), "the server listening")
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(15)


def test_default_listens_on_loopback_only() -> None:
    with serve() as (port, proc):
        addresses = listening_addresses(port)
    assert addresses
    assert addresses <= {"127.0.0.1", "::1"}
    assert b"beyond loopback" not in proc.stderr.read()  # type: ignore[union-attr]


def test_listening_everywhere_without_tls_is_a_warning() -> None:
    with serve("-L", "0.0.0.0") as (port, proc):
        assert listening_addresses(port) == {"0.0.0.0"}
    err = proc.stderr.read()  # type: ignore[union-attr]
    assert b"listening beyond loopback without TLS" in err
