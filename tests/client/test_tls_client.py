"""gearshift's own Client, Worker and AdminClient (blocking and asyncio) and the CLI's
``-S`` over TLS, against a real ``gearshift serve --ssl --ssl-ca-file`` (client
certificates required), with certificates made at test time."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gearshift.client import (
    Address,
    AdminClient,
    AsyncAdminClient,
    AsyncClient,
    AsyncWorker,
    Client,
    GearmanError,
    Job,
    Worker,
    parse_servers,
    tls_context,
)
from gearshift.client._servers import parse_address
from gearshift.testing import GearshiftServer, TlsFiles, make_tls_files

from .conftest import running


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tls_files: TlsFiles) -> Iterator[GearshiftServer]:
    srv = GearshiftServer(extra_args=[*tls_files.serve_args(with_ca=True),
                                      "--keep-results", "1h"])
    srv.tls = tls_files.client_context()
    with srv:
        yield srv


@pytest.fixture
def libgearman_env(tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables ``gearman -S`` reads, pointing at the test files."""
    env = {"GEARMAND_CA_CERTIFICATE": tls_files.ca, "GEARMAN_CLIENT_PEM": tls_files.client_cert,
           "GEARMAN_CLIENT_KEY": tls_files.client_key}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def reverse(job: Job) -> bytes:
    return job.data[::-1]


def test_blocking_client_worker_and_admin_over_tls(server: GearshiftServer,
                                                   tls_files: TlsFiles) -> None:
    context = tls_files.client_context()
    worker = Worker([server.address], ssl=context, concurrency=2)
    worker.register("tls_rev", reverse)
    with running(worker), Client([server.address], ssl=context, timeout=20) as client:
        assert client.submit("tls_rev", b"abc") == b"cba"
        big = os.urandom(3 << 20)  # larger than one read and many TLS records
        assert client.submit("tls_rev", big) == big[::-1]

        # One Client shared by threads: reads and writes of one TLS connection from
        # several threads at once (OpenSSL forbids unserialised use).
        def job(i: int) -> bytes:
            return client.submit("tls_rev", b"%d-payload" % i)

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(job, range(150)))
        assert results == [(b"%d-payload" % i)[::-1] for i in range(150)]
        # Two connections (the server listed twice): replies are waited for on both at
        # once, decrypted bytes already buffered in one of them included.
        with Client([server.address, server.address], ssl=context, timeout=20) as pair:
            tasks = pair.task_set()
            for i in range(60):
                tasks.add("tls_rev", b"pair-%d" % i + b"." * (i * 997))
            assert tasks.results() == [(b"pair-%d" % i + b"." * (i * 997))[::-1]
                                       for i in range(60)]
        with AdminClient(server.address, ssl=context) as admin:
            assert admin.version().startswith("0.")
            status = {s.function: s for s in admin.status()}["tls_rev"]
            assert status.workers == 2


def test_asyncio_client_worker_and_admin_over_tls(server: GearshiftServer,
                                                  tls_files: TlsFiles) -> None:
    context = tls_files.client_context()

    async def main() -> None:
        worker = AsyncWorker([server.address], ssl=context)
        worker.register("tls_async_rev", reverse)
        runner = asyncio.create_task(worker.run())
        try:
            async with AsyncClient([server.address], ssl=context, timeout=20) as client:
                results = await asyncio.gather(
                    *(client.submit("tls_async_rev", b"x%d" % i) for i in range(50)))
                assert results == [(b"x%d" % i)[::-1] for i in range(50)]
            async with AsyncAdminClient(server.address, ssl=context) as admin:
                assert (await admin.version()).startswith("0.")
        finally:
            worker.stop()
            await asyncio.wait_for(runner, 10)

    asyncio.run(main())


def test_ssl_true_reads_libgearmans_variables(server: GearshiftServer,
                                              libgearman_env: dict[str, str]) -> None:
    with AdminClient(server.address, ssl=True) as admin:
        assert admin.version().startswith("0.")
    built = tls_context()
    assert built.verify_mode == ssl.CERT_REQUIRED
    assert built.check_hostname


def test_the_server_refuses_a_client_without_certificate(server: GearshiftServer,
                                                         tls_files: TlsFiles) -> None:
    no_cert = tls_files.client_context(with_cert=False)
    with (pytest.raises(GearmanError),
          AdminClient(server.address, ssl=no_cert, timeout=5) as admin):
        admin.version()


def test_a_server_signed_by_another_ca_is_refused(server: GearshiftServer,
                                                  tls_files: TlsFiles) -> None:
    wrong = tls_context(ca_file=tls_files.other_ca, certificate=tls_files.client_cert,
                        key=tls_files.client_key, environ={})
    with (pytest.raises(GearmanError, match="certificate verify failed"),
          AdminClient(server.address, ssl=wrong, timeout=5) as admin):
        admin.version()
    with (pytest.raises(GearmanError),
          Client([server.address], ssl=wrong, timeout=5, connect_timeout=2) as client):
        client.submit("tls_nobody", b"x")


def test_a_plaintext_client_gets_an_error_not_a_hang(server: GearshiftServer) -> None:
    with (pytest.raises(GearmanError),
          AdminClient(server.address, timeout=5) as admin):
        admin.version()


def test_tls_context_names_a_bad_file(tls_files: TlsFiles, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match=f"CA file {missing}"):
        tls_context(ca_file=missing, environ={})
    with pytest.raises(ValueError, match=f"client certificate {tls_files.client_cert}"):
        tls_context(ca_file=tls_files.ca, certificate=tls_files.client_cert,
                    key=tls_files.other_client_key, environ={})
    with pytest.raises(TypeError):
        Client(["localhost"], ssl="yes")  # type: ignore[arg-type]


def _cli(args: list[str], env: dict[str, str], stdin: bytes = b"",
         timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gearshift", *args], input=stdin,
                          capture_output=True, timeout=timeout, env={**os.environ, **env})


def test_cli_dash_s_submits_works_and_administers_over_tls(
        server: GearshiftServer, libgearman_env: dict[str, str]) -> None:
    hp = ["-h", server.host, "-p", str(server.port)]
    worker = subprocess.Popen([sys.executable, "-m", "gearshift", "work", "-S", *hp,
                               "-f", "tls_cli", "-c", "2", "--", "tr", "a-z", "A-Z"],
                              env={**os.environ, **libgearman_env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        done = _cli(["submit", "-S", *hp, "-f", "tls_cli", "hello"], libgearman_env)
        assert (done.returncode, done.stdout) == (0, b"HELLO"), done.stderr
        bg = _cli(["submit", "-S", *hp, "-f", "tls_cli", "-b", "-v", "later"], libgearman_env)
        assert bg.returncode == 0, bg.stderr
        handle = bg.stdout.split(b": ", 1)[1].strip().decode()
        outcome = _cli(["result", "-S", *hp, handle, "--wait", "20"], libgearman_env)
        assert (outcome.returncode, outcome.stdout) == (0, b"LATER"), outcome.stderr
        status = _cli(["admin", "-S", *hp, "--status"], libgearman_env)
        assert status.returncode == 0, status.stderr
        assert b"tls_cli" in status.stdout
    finally:
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, worker.stderr.read() if worker.stderr else b""
    # The file flags instead of the variables (each implies -S).
    files = {k: v for k, v in libgearman_env.items()}
    by_flag = _cli(["admin", *hp, "--ssl-ca-file", files["GEARMAND_CA_CERTIFICATE"],
                    "--ssl-certificate", files["GEARMAN_CLIENT_PEM"],
                    "--ssl-key", files["GEARMAN_CLIENT_KEY"], "--server-version"],
                   {"GEARMAND_CA_CERTIFICATE": "", "GEARMAN_CLIENT_PEM": ""})
    assert by_flag.returncode == 0, by_flag.stderr
    # Without -S the TLS port cannot be spoken to; the message says what failed.
    plain = _cli(["admin", *hp, "--server-version"], libgearman_env)
    assert plain.returncode != 0
    bad = _cli(["submit", "-S", *hp, "--ssl-ca-file", "/nonexistent/ca.pem", "-f", "f", "x"],
               libgearman_env)
    assert bad.returncode == 2
    assert b"/nonexistent/ca.pem" in bad.stderr


def test_worker_stop_wakes_a_sleeping_tls_worker(server: GearshiftServer,
                                                 tls_files: TlsFiles) -> None:
    worker = Worker([server.address], ssl=tls_files.client_context())
    worker.register("tls_idle", reverse)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    with AdminClient(server.address, ssl=tls_files.client_context()) as admin:
        for _ in range(100):
            if any(s.function == "tls_idle" and s.workers for s in admin.status()):
                break
            threading.Event().wait(0.05)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_tls_scheme_in_server_addresses() -> None:
    assert parse_address("tls://jobs:4731") == Address("jobs", 4731, tls=True)
    assert parse_address("SSL://[::1]:5") == Address("::1", 5, tls=True)
    assert parse_address("tls://jobs") == Address("jobs", 4730, tls=True)
    assert str(Address("jobs", 4731, tls=True)) == "tls://jobs:4731"
    assert parse_servers("tls://a:1,b:2") == [Address("a", 1, tls=True), Address("b", 2)]
    with pytest.raises(ValueError, match="empty"):
        parse_address("tls://")


def test_gearman_servers_entries_may_ask_for_tls(server: GearshiftServer,
                                                 libgearman_env: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEARMAN_SERVERS", f"tls://{server.address}")
    worker = Worker()
    worker.register("tls_env_rev", reverse)
    with running(worker), Client(timeout=20) as client:
        assert client.submit("tls_env_rev", b"abc") == b"cba"
        handle = client.submit_background("tls_env_rev", b"xyz")
        assert client.result(handle, wait=20).data == b"zyx"
    with AdminClient() as admin:
        assert admin.version().startswith("0.")
    # The CLI reads the same entries; -p replaces the port and keeps the scheme.
    by_cli = _cli(["admin", "-h", f"tls://{server.host}", "-p", str(server.port),
                   "--server-version"], libgearman_env)
    assert by_cli.returncode == 0, by_cli.stderr
