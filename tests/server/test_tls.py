"""``gearshift serve --ssl``: real servers, real TLS handshakes, certificates made at test
time (trustme). Covers both event loops (their TLS code is separate), plaintext and
stalled peers on the TLS port, client certificates when a CA is given, and the files
that must stop startup with a message naming them."""

from __future__ import annotations

import os
import select
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.protocol import REQ, encode
from gearshift.testing import GearshiftServer, TlsFiles, make_tls_files

from ._wire import P, Wire, round_trip, rss_kib

#: A TLS record header announcing a 512-byte handshake message, and 6 bytes of it: a
#: ClientHello that never finishes arriving.
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def tls_server(files: TlsFiles, *args: str, with_ca: bool = False,
               env: dict[str, str] | None = None, ssl_args: bool = True) -> GearshiftServer:
    server = GearshiftServer(extra_args=[*(files.serve_args(with_ca) if ssl_args else []),
                                         *args], env=env)
    server.tls = files.client_context()
    return server


def echo(wire: Wire, data: bytes = b"hello") -> bool:
    return wire.call(P.ECHO_REQ, data) == (P.ECHO_RES, [data])


def refused(address: str, context: ssl.SSLContext) -> str | None:
    """How the server refused a TLS client (None: it served an ECHO)."""
    try:
        wire = Wire.to(address, context)
        try:
            return None if echo(wire) else "wrong reply"
        finally:
            wire.close()
    except (OSError, AssertionError) as exc:  # ssl.SSLError is an OSError
        return str(exc) or type(exc).__name__


@pytest.fixture(scope="module")
def server(tls_files: TlsFiles) -> Iterator[GearshiftServer]:
    with tls_server(tls_files) as srv:
        yield srv


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_jobs_run_over_tls_on_either_event_loop(tls_files: TlsFiles, loop: str) -> None:
    with tls_server(tls_files, "--loop", loop, "--verbose", "INFO") as srv:
        context = tls_files.client_context()
        round_trip(srv.address, tls=context)
        big = bytes(range(256)) * 4096  # 1 MiB: many TLS records each way
        round_trip(srv.address, function=b"big", payload=big, tls=context)
        wire = Wire.to(srv.address, context)
        assert isinstance(wire.sock, ssl.SSLSocket)
        assert wire.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert wire.admin(b"version").startswith(b"OK ")
        wire.close()
        assert "(TLS only)" in srv.read_log()


def test_a_plaintext_client_is_disconnected_and_tls_clients_carry_on(
        server: GearshiftServer, tls_files: TlsFiles) -> None:
    context = tls_files.client_context()
    before = Wire.to(server.address, context)
    assert echo(before)
    plain = Wire.to(server.address)
    plain.send(P.ECHO_REQ, b"plaintext")
    reply = plain.closed_by_peer(10)
    plain.close()
    assert b"RES" not in reply  # at most a TLS alert, never a Gearman reply
    assert echo(before, b"still here")
    round_trip(server.address, tls=context)
    before.close()
    assert server.proc is not None
    assert server.proc.poll() is None
    assert "Traceback" not in server.read_log()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_stalled_handshake_is_closed_at_the_deadline_and_others_are_served(
        tls_files: TlsFiles, loop: str) -> None:
    with tls_server(tls_files, "--loop", loop, "--ssl-handshake-timeout", "1.5") as srv:
        silent = socket.create_connection((srv.host, srv.port), timeout=10)
        partial = socket.create_connection((srv.host, srv.port), timeout=10)
        partial.sendall(PARTIAL_CLIENT_HELLO)
        round_trip(srv.address, tls=tls_files.client_context())
        for sock in (silent, partial):
            start = time.monotonic()
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            # Closed by the server (not our 10 s socket timeout, which raises).
            assert b"RES" not in data, data
            assert time.monotonic() - start < 10
            sock.close()
        round_trip(srv.address, tls=tls_files.client_context())


def test_without_a_ca_file_clients_need_no_certificate(server: GearshiftServer,
                                                       tls_files: TlsFiles) -> None:
    assert refused(server.address, tls_files.client_context(with_cert=False)) is None


def test_with_a_ca_file_clients_must_present_a_certificate_it_signed(
        tls_files: TlsFiles) -> None:
    with tls_server(tls_files, with_ca=True) as srv:
        assert refused(srv.address, tls_files.client_context()) is None
        assert refused(srv.address, tls_files.client_context(with_cert=False)) is not None
        stranger = ssl.create_default_context(cafile=tls_files.ca)
        stranger.load_cert_chain(tls_files.other_client_cert, tls_files.other_client_key)
        assert refused(srv.address, stranger) is not None
        # The refusals harmed nobody.
        round_trip(srv.address, tls=tls_files.client_context())


def test_a_client_trusting_another_ca_refuses_the_server(server: GearshiftServer,
                                                        tls_files: TlsFiles) -> None:
    wrong = ssl.create_default_context(cafile=tls_files.other_ca)
    with pytest.raises(ssl.SSLCertVerificationError):
        Wire.to(server.address, wrong)
    assert refused(server.address, tls_files.client_context()) is None


def test_openssl_s_client_completes_a_handshake(server: GearshiftServer,
                                                tls_files: TlsFiles) -> None:
    # stdin stays open until the reply is in: at EOF s_client quits, maybe before it.
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", f"{server.host}:{server.port}", "-CAfile",
         tls_files.ca, "-verify_return_error", "-servername", "localhost"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    assert proc.stdout is not None
    output = b""
    try:
        proc.stdin.write(b"version\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while b"OK 0." not in output and time.monotonic() < deadline:
            if not select.select([proc.stdout], [], [], 1.0)[0]:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            output += chunk
    finally:
        proc.kill()
        proc.wait()
    assert b"Verify return code: 0 (ok)" in output, output
    assert b"OK 0." in output  # the admin reply came back through TLS


def test_gearmand_environment_variables_name_the_files_and_flags_win(
        tls_files: TlsFiles, tmp_path: Path) -> None:
    env = {"GEARMAND_SERVER_PEM": tls_files.server_cert,
           "GEARMAND_SERVER_KEY": str(tmp_path / "no-such.key"),
           "GEARMAND_CA_CERTIFICATE": tls_files.ca}
    with tls_server(tls_files, "--ssl", "--ssl-key", tls_files.server_key, env=env,
                    ssl_args=False) as srv:
        assert refused(srv.address, tls_files.client_context()) is None
        # The CA came from GEARMAND_CA_CERTIFICATE: a certificate is now required.
        assert refused(srv.address, tls_files.client_context(with_cert=False)) is not None


def test_ssl_files_without_ssl_leave_the_port_plaintext_and_say_so(
        tls_files: TlsFiles) -> None:
    srv = GearshiftServer(extra_args=["--ssl-certificate", tls_files.server_cert])
    with srv:
        round_trip(srv.address)
        assert "--ssl-certificate without --ssl" in srv.read_log()


def _serve_fails(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "gearshift", "serve", "--store", "memory",
                             "-L", "127.0.0.1", "-p", "0", *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result
    return result.stderr


@pytest.mark.parametrize(("option", "bad"), [
    ("--ssl-key", "missing"),
    ("--ssl-key", "client_key"),
    ("--ssl-key", "server_cert"),
    ("--ssl-certificate", "missing"),
    ("--ssl-certificate", "server_key"),
    ("--ssl-ca-file", "missing"),
    ("--ssl-ca-file", "server_key"),
])
def test_a_bad_file_stops_startup_naming_it(tls_files: TlsFiles, tmp_path: Path,
                                            option: str, bad: str) -> None:
    path = str(tmp_path / "missing.pem") if bad == "missing" else getattr(tls_files, bad)
    args = {"--ssl-certificate": tls_files.server_cert, "--ssl-key": tls_files.server_key}
    args[option] = path
    stderr = _serve_fails("--ssl", *(x for pair in args.items() for x in pair))
    assert f"{option} {path}" in stderr, stderr
    assert "Traceback" not in stderr


def test_a_bad_handshake_timeout_is_refused(tls_files: TlsFiles) -> None:
    stderr = _serve_fails(*tls_files.serve_args(), "--ssl-handshake-timeout", "0")
    assert "--ssl-handshake-timeout" in stderr


def test_tls_from_a_gearmand_config_file(tls_files: TlsFiles, tmp_path: Path) -> None:
    config = tmp_path / "gearmand.conf"
    config.write_text(f"# as in /etc/gearmand.conf\nssl\nssl-certificate={tls_files.server_cert}\n"
                      f"--ssl-key {tls_files.server_key}\nssl-ca-file={tls_files.ca}\n")
    with tls_server(tls_files, "--config-file", str(config), ssl_args=False) as srv:
        round_trip(srv.address, tls=tls_files.client_context())
        assert refused(srv.address, tls_files.client_context(with_cert=False)) is not None


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_tls_client_that_never_reads_cannot_grow_the_server(tls_files: TlsFiles,
                                                              loop: str) -> None:
    """The plaintext back-pressure (replies back up -> the server stops reading that
    client) holds through each loop's TLS layer: sends stall, memory stays put, others
    are served."""
    request = encode(P.ECHO_REQ, b"e" * (256 * 1024), magic=REQ)
    with tls_server(tls_files, "--loop", loop) as srv:
        hog = Wire.to(srv.address, tls_files.client_context()).sock
        hog.setblocking(False)
        rss_before = rss_kib(srv.pid)
        sent, blocked_since = 0, None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                sent += hog.send(request[sent % len(request):])
                blocked_since = None
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 1.0:
                    break  # the server has stopped reading us
                time.sleep(0.01)
        assert blocked_since is not None, f"sent {sent >> 20} MiB, the server kept reading"
        assert sent < 64 * 1024 * 1024
        assert rss_kib(srv.pid) - rss_before < 64 * 1024
        other = Wire.to(srv.address, tls_files.client_context())
        assert echo(other, b"still here")
        other.close()
        hog.close()
