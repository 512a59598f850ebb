"""Run gear's own published functional tests (``gear.tests.test_functional``) against a
server that is already running, instead of the in-process ``gear.Server`` they start.

    python gear_suite.py HOST PORT
    python gear_suite.py --tls       # gear's TLS scenarios against gearshift serve --ssl

gear's wheel ships its tests; they construct ``gear.Server(0)`` and then only use its
``port``, ``shutdown()`` and, in one test, ``normal_queue``. Those three are answered here
for the external server (``normal_queue`` from the admin ``status`` line of the tests'
function ``test``). With ``--tls``, only the TLS scenarios run, each against a
``gearshift serve --ssl`` started with the certificates the test made (gear's own server
also requires client certificates when given a CA, as ``--ssl-ca-file`` does); without
it they are skipped. Prints one JSON object: passed / failed / skipped counts and the
failing test ids.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import unittest
from typing import Any

import gear

from gearshift.testing import GearshiftServer

TLS = sys.argv[1:] == ["--tls"]
HOST, PORT = ("127.0.0.1", 0) if TLS else (sys.argv[1], int(sys.argv[2]))
#: gearshift servers started for the TLS scenarios, stopped at the end
STARTED: list[GearshiftServer] = []


class ExternalServer:
    """Stands in for ``gear.Server`` in gear's tests: the server is already running."""

    def __init__(self, port: int = 0, ssl_key: Any = None, ssl_cert: Any = None,
                 ssl_ca: Any = None, *args: Any, **kwargs: Any) -> None:
        self.tls: ssl.SSLContext | None = None
        if not TLS:
            if ssl_key is not None:
                raise unittest.SkipTest("TLS scenario: run with --tls")
            self.port = PORT
            return
        if ssl_key is None:
            raise unittest.SkipTest("plaintext scenario: run without --tls")
        # The test wrote client.crt/key beside the server's files; the readiness probe
        # presents them. gear's certificates name no host ("CN=server"): no name check.
        folder = os.path.dirname(ssl_key)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.tls.check_hostname = False
        self.tls.load_verify_locations(ssl_ca)
        self.tls.load_cert_chain(os.path.join(folder, "client.crt"),
                                 os.path.join(folder, "client.key"))
        server = GearshiftServer(extra_args=["--ssl", "--ssl-certificate", ssl_cert,
                                             "--ssl-key", ssl_key, "--ssl-ca-file", ssl_ca])
        server.tls = self.tls
        STARTED.append(server)
        server.start()
        self.port = server.port

    def shutdown(self) -> None:
        """The server outlives each test; nothing to stop."""

    @property
    def normal_queue(self) -> list[None]:
        """As many entries as the ``test`` function has queued (not running) jobs."""
        with socket.create_connection((HOST, self.port), timeout=5) as plain, (
                self.tls.wrap_socket(plain) if self.tls else plain) as sock:
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
    for server in STARTED:
        server.__exit__(None, None, None)
    bad = [test.id() for test, _ in result.failures + result.errors]
    skipped = len(result.skipped)
    print(json.dumps({"passed": result.testsRun - len(bad) - skipped, "failed": sorted(bad),
                      "skipped": skipped}), flush=True)
    # gear's client and worker threads are not daemons; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
