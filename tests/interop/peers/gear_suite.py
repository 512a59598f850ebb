"""Run gear's own published functional tests (``gear.tests.test_functional``) against a
server that is already running, instead of the in-process ``gear.Server`` they start.

    python gear_suite.py HOST PORT

gear's wheel ships its tests; they construct ``gear.Server(0)`` and then only use its
``port``, ``shutdown()`` and, in one test, ``normal_queue``. Those three are answered here
for the external server (``normal_queue`` from the admin ``status`` line of the tests'
function ``test``). The TLS scenarios are skipped: neither server under test listens with
TLS. Prints one JSON object: passed / failed / skipped counts and the failing test ids.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import unittest
from typing import Any

import gear

HOST, PORT = sys.argv[1], int(sys.argv[2])


class ExternalServer:
    """Stands in for ``gear.Server`` in gear's tests: the server is already running."""

    def __init__(self, port: int = 0, ssl_key: Any = None, *args: Any, **kwargs: Any) -> None:
        if ssl_key is not None:
            raise unittest.SkipTest("TLS: the servers under test listen without TLS")
        self.port = PORT

    def shutdown(self) -> None:
        """The server outlives each test; nothing to stop."""

    @property
    def normal_queue(self) -> list[None]:
        """As many entries as the ``test`` function has queued (not running) jobs."""
        with socket.create_connection((HOST, PORT), timeout=5) as sock:
            sock.sendall(b"status\n")
            data = b""
            while not data.endswith(b".\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        for line in data.decode().splitlines():
            fields = line.split("\t")
            if fields[0] == "test" and len(fields) == 4:
                return [None] * (int(fields[1]) - int(fields[2]))
        return []


def main() -> None:
    gear.Server = ExternalServer
    suite = unittest.defaultTestLoader.loadTestsFromName("gear.tests.test_functional")
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(suite)
    bad = [test.id() for test, _ in result.failures + result.errors]
    skipped = len(result.skipped)
    print(json.dumps({"passed": result.testsRun - len(bad) - skipped, "failed": sorted(bad),
                      "skipped": skipped}), flush=True)
    # gear's client and worker threads are not daemons; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
