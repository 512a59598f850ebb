"""Interop both ways, against gearshift and gearmand: our client with a PHP (libgearman)
worker, and a Perl (Gearman::Client) client with our worker."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gearshift.client import Client, EventKind, Job, JobFailed, Worker
from gearshift.testing import ServerProcess

from .conftest import running

pytestmark = pytest.mark.interop
PEERS = Path(__file__).parent / "peers"
Names = Callable[[str], str]


def php_gearman_available() -> bool:
    if shutil.which("php") is None:
        return False
    probe = subprocess.run(["php", "-r", "exit(class_exists('GearmanWorker') ? 0 : 1);"],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def perl_gearman_available() -> bool:
    if shutil.which("perl") is None:
        return False
    return subprocess.run(["perl", "-MGearman::Client", "-e", "1"], capture_output=True,
                          timeout=30).returncode == 0


@pytest.mark.skipif(not php_gearman_available(), reason="apt-get install php-cli php-gearman")
def test_our_client_with_php_worker(server: ServerProcess, fname: Names) -> None:
    proc = subprocess.Popen(["php", str(PEERS / "php_worker.php"), server.host,
                             str(server.port), fname(), "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        with Client([server.address], timeout=20) as client:
            assert client.submit(fname(), b"gearshift") == b"tfihsraeg"
            events = [(e.kind, e.data, e.numerator, e.denominator)
                      for e in client.stream(fname(), b"abc")]
            assert events == [(EventKind.STATUS, b"", 1, 2),
                              (EventKind.DATA, b"php:abc", 0, 0),
                              (EventKind.COMPLETE, b"cba", 0, 0)]
            with pytest.raises(JobFailed):
                client.submit(fname(), b"fail")
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not perl_gearman_available(),
                    reason="apt-get install libgearman-client-perl")
def test_perl_client_with_our_worker(server: ServerProcess, fname: Names) -> None:
    background = threading.Event()

    def shout(job: Job) -> bytes:
        if job.data == b"bg-from-perl":
            background.set()
        if job.data == b"boom":
            raise RuntimeError("boom")
        return job.data.upper() + b"!"

    worker = Worker([server.address])
    worker.register(fname(), shout)
    with running(worker):
        out = subprocess.run(["perl", str(PEERS / "perl_client.pl"), server.address, fname(),
                              "hello", "boom", "perl"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[:3] == ["RESULT HELLO!", "FAIL", "RESULT PERL!"]
        assert lines[3].startswith("BG ")
        assert lines[3] != "BG none"
        assert background.wait(10)
