"""Third-party TLS clients against ``gearshift serve --ssl``: Perl's Gearman::Client and
Gearman::Worker (IO::Socket::SSL), and libgearman's ``gearman -S`` / ``gearadmin -S``.

Debian's libgearman is built without TLS: its ``-S`` is accepted and does nothing, so
those tools speak plaintext (see docs/operations.md). The libgearman tests therefore
check what such a tool meets on a TLS port (a clean refusal that harms nobody) and run
the full ``-S`` round trip only where libgearman really speaks TLS. gear (PyPI) is run
over TLS by its own published tests (test_published_suites.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.client import AdminClient, Client, GearmanError, Worker
from gearshift.testing import (
    GearmandServer,
    GearshiftServer,
    TlsFiles,
    gearmand_path,
    make_tls_files,
)

PERL_TLS = Path(__file__).parent / "peers" / "perl_tls.pl"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tls_files: TlsFiles) -> Iterator[GearshiftServer]:
    """TLS-only, client certificates required (--ssl-ca-file)."""
    srv = GearshiftServer(extra_args=tls_files.serve_args(with_ca=True))
    srv.tls = tls_files.client_context()
    with srv:
        yield srv


def perl(files: TlsFiles, server: GearshiftServer, mode: str, func: str, arg: str,
         cert: bool = True) -> list[str]:
    return ["perl", str(PERL_TLS), mode, server.host, str(server.port), files.ca,
            files.client_cert if cert else "-", files.client_key if cert else "-", func, arg]


def test_perl_client_and_worker_over_tls(server: GearshiftServer, tls_files: TlsFiles) -> None:
    worker = subprocess.Popen(perl(tls_files, server, "worker", "perl_tls_rev", "1"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with AdminClient(server.address, ssl=tls_files.client_context()) as admin:
            for _ in range(200):
                if any(s.function == "perl_tls_rev" and s.workers for s in admin.status()):
                    break
                threading.Event().wait(0.05)
        done = subprocess.run(perl(tls_files, server, "client", "perl_tls_rev", "stressed"),
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, "desserts"), done.stderr
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_perl_client_with_a_gearshift_worker(server: GearshiftServer,
                                             tls_files: TlsFiles) -> None:
    worker = Worker([server.address], ssl=tls_files.client_context())
    worker.register("perl_tls_upper", lambda job: job.data.upper())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        done = subprocess.run(perl(tls_files, server, "client", "perl_tls_upper", "abc"),
                              capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (0, "ABC"), done.stderr
    finally:
        worker.stop()
        thread.join(10)


def test_perl_client_without_certificate_is_refused(server: GearshiftServer,
                                                    tls_files: TlsFiles) -> None:
    refused = subprocess.run(perl(tls_files, server, "client", "perl_tls_none", "x",
                                  cert=False), capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert refused.stdout == ""
    with AdminClient(server.address, ssl=tls_files.client_context()) as admin:
        assert admin.version().startswith("0.")


def _libgearman_speaks_tls() -> bool:
    """Whether ``gearadmin -S`` really uses TLS: a build without it talks plaintext to a
    plaintext server as if -S were not given."""
    with GearshiftServer() as plain:
        probe = subprocess.run(["gearadmin", "-S", "-h", plain.host, "-p", str(plain.port),
                                "--server-version"], capture_output=True, text=True,
                               timeout=30)
    return not probe.stdout.strip().startswith("0.")


needs_gearman_tools = pytest.mark.skipif(
    shutil.which("gearadmin") is None or shutil.which("gearman") is None,
    reason="gearman-tools is not installed (scripts/test.sh installs it)")


def _env(files: TlsFiles) -> dict[str, str]:
    return {**os.environ, "GEARMAND_CA_CERTIFICATE": files.ca,
            "GEARMAN_CLIENT_PEM": files.client_cert, "GEARMAN_CLIENT_KEY": files.client_key}


@needs_gearman_tools
def test_gearadmin_dash_s_on_a_tls_port(server: GearshiftServer, tls_files: TlsFiles) -> None:
    """Whatever this libgearman does with -S, the TLS port answers correctly and stays up:
    a TLS build gets the status table; Debian's plaintext one gets no Gearman reply."""
    with Client([server.address], ssl=tls_files.client_context(), timeout=10) as client:
        client.submit_background("gearadmin_tls_seen", b"x")
    result = subprocess.run(["gearadmin", "-S", "-h", server.host, "-p", str(server.port),
                             "--status"], capture_output=True, text=True, timeout=30,
                            env=_env(tls_files))
    if _libgearman_speaks_tls():
        assert result.returncode == 0, result.stderr
        assert "gearadmin_tls_seen" in result.stdout
    else:
        assert "gearadmin_tls_seen" not in result.stdout
    with AdminClient(server.address, ssl=tls_files.client_context()) as admin:
        assert "gearadmin_tls_seen" in {s.function for s in admin.status()}
        for job in admin.show_jobs():
            admin.cancel_job(job.handle)


@needs_gearman_tools
def test_gearman_dash_s_worker_and_client_over_tls(server: GearshiftServer,
                                                   tls_files: TlsFiles) -> None:
    if not _libgearman_speaks_tls():
        pytest.skip("this libgearman is built without TLS (Debian's is): its -S is a no-op")
    hp = ["-h", server.host, "-p", str(server.port)]
    env = _env(tls_files)
    worker = subprocess.Popen(["gearman", "-S", "-w", *hp, "-f", "gm_tls", "-c", "1", "--",
                               "rev"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        done = subprocess.run(["gearman", "-S", *hp, "-f", "gm_tls", "abc"], env=env,
                              capture_output=True, text=True, timeout=30)
        assert done.stdout.strip() == "cba", done.stderr
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


@pytest.mark.gearmand
def test_gearshift_client_against_gearmand_ssl(tls_files: TlsFiles) -> None:
    """gearshift's TLS client against the reference server started with ``--ssl``.

    Debian's gearmand 1.1.20 accepts ``--ssl`` but serves plaintext (it logs "SSL: true",
    then reads the ClientHello as a bad Gearman packet: "invalid magic value"); then the
    TLS client must fail cleanly, and this pins the claim in docs/operations.md. A
    gearmand that does speak TLS must serve the TLS client instead.
    """
    if gearmand_path() is None:
        pytest.skip("gearmand is not installed (apt-get install gearman-job-server)")
    args = [*tls_files.serve_args(), "--threads", "0"]
    try:
        reference: GearmandServer = GearmandServer(extra_args=args,
                                                   startup_timeout=5).start()
        plaintext = True
    except RuntimeError:  # no plaintext answer: it speaks TLS
        reference = GearmandServer(extra_args=args)
        reference.tls = tls_files.client_context()
        reference.start()
        plaintext = False
    try:
        tls = tls_files.client_context()
        if plaintext:
            with (pytest.raises(GearmanError),
                  AdminClient(reference.address, ssl=tls, timeout=5) as admin):
                admin.version()
            with AdminClient(reference.address, timeout=5) as admin:
                assert admin.version()  # the "--ssl" port answered in plaintext
        else:
            with AdminClient(reference.address, ssl=tls, timeout=5) as admin:
                assert admin.version()
    finally:
        reference.__exit__(None, None, None)
