"""Process-level behaviour of ``gearshift serve``: signals, pid file, listening addresses,
the admin shutdown switch, and memory that stays bounded under hostile headers. Every
server here is a child process this test started; it is stopped by its own pid."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from gearshift.protocol import REQ, encode_request, header
from gearshift.testing import GearshiftServer, ServerProcess, free_port

from ._wire import P, Wire, proc_alive, round_trip, rss_kib


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _refuses_connections(server: GearshiftServer) -> bool:
    try:
        socket.create_connection((server.host, server.port), timeout=0.5).close()
    except OSError:
        return True
    return False


def _exit_code(server: GearshiftServer, timeout: float) -> int:
    assert server.proc is not None
    return server.proc.wait(timeout)


# ---------------------------------------------------------------- SIGTERM


def test_sigterm_lets_the_running_job_finish_and_hands_out_no_more() -> None:
    with GearshiftServer(extra_args=["--shutdown-timeout", "8"]) as server:
        client, busy, idle = (Wire.to(server.address) for _ in range(3))
        busy.send(P.CAN_DO, b"f")
        idle.send(P.CAN_DO, b"f")
        _, [running] = client.call(P.SUBMIT_JOB, b"f", b"", b"first")
        assert busy.call(P.GRAB_JOB)[1][0] == running
        assert client.call(P.SUBMIT_JOB_BG, b"f", b"", b"second")[0] == P.JOB_CREATED
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: _refuses_connections(server), 5, "the listener to close")
        assert idle.call(P.GRAB_JOB) == (P.NO_JOB, [])  # draining: nothing new starts
        busy.send(P.WORK_COMPLETE, running, b"done")
        assert client.recv() == (P.WORK_COMPLETE, [running, b"done"])
        assert _exit_code(server, 8) == 0
        # It left because the job finished, not because the deadline passed.
        assert time.monotonic() - started < 6


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_stop_signal_gives_up_on_a_stuck_job_at_the_shutdown_timeout(sig: int) -> None:
    with GearshiftServer(extra_args=["--shutdown-timeout", "1"]) as server:
        client, worker = Wire.to(server.address), Wire.to(server.address)
        worker.send(P.CAN_DO, b"f")
        client.call(P.SUBMIT_JOB, b"f", b"", b"x")
        assert worker.call(P.GRAB_JOB)[0] == P.JOB_ASSIGN
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(sig)
        assert _exit_code(server, 8) == 0
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 5, elapsed
        worker.closed_by_peer(timeout=2)


# ---------------------------------------------------------------- SIGHUP, pid file


def test_sighup_reopens_the_log_file(tmp_path: Path) -> None:
    log = tmp_path / "gearshift.log"
    with GearshiftServer(extra_args=["--log-file", str(log), "--verbose", "INFO"]) as server:
        _wait_for(lambda: log.exists() and "listening" in log.read_text(), 5, "first log line")
        rotated = tmp_path / "gearshift.log.1"
        log.rename(rotated)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        _wait_for(log.exists, 5, "a new log file after SIGHUP")
        bad = Wire.to(server.address)
        bad.send_raw(b"\0BAD" + b"\0" * 8)  # logged at INFO when the peer is dropped
        bad.closed_by_peer()
        _wait_for(lambda: "closing" in log.read_text(), 5, "a log line in the new file")
        assert "closing" not in rotated.read_text()
        assert proc_alive(server.pid)


def test_pid_file_written_and_removed() -> None:
    with GearshiftServer() as server:
        pid_file = Path(server.workdir) / "server.pid"
        assert pid_file.read_text().strip() == str(server.pid)
        assert server.stop() == 0
        assert not pid_file.exists()


# ---------------------------------------------------------------- addresses and ports


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_listens_on_ipv6_and_ipv4_together() -> None:
    with GearshiftServer(extra_args=["--listen", "::1"]) as server:
        v4 = f"127.0.0.1:{server.port}"
        v6 = f"[::1]:{server.port}"
        round_trip(v4)
        round_trip(v6)
        # One job across families: client on IPv4, worker on IPv6.
        client, worker = Wire.to(v4), Wire.to(v6)
        worker.send(P.CAN_DO, b"cross")
        _, [handle] = client.call(P.SUBMIT_JOB, b"cross", b"", b"x")
        assert worker.call(P.GRAB_JOB)[1][0] == handle
        worker.send(P.WORK_COMPLETE, handle, b"y")
        assert client.recv() == (P.WORK_COMPLETE, [handle, b"y"])


class _EnvPortServer(ServerProcess):
    """``gearshift serve`` given no --port, so it must take GEARMAND_PORT."""

    name = "gearshift-envport"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gearshift", "serve", "--listen", self.host,
                "--store", "memory"]


def test_gearmand_port_environment_variable() -> None:
    port = free_port()
    with _EnvPortServer(port=port, env={"GEARMAND_PORT": str(port)}) as server:
        round_trip(server.address)


def test_port_option_beats_the_environment() -> None:
    decoy = free_port()
    with GearshiftServer(env={"GEARMAND_PORT": str(decoy)}) as server:
        assert server.port != decoy
        round_trip(server.address)


# ---------------------------------------------------------------- admin shutdown


def test_admin_shutdown_is_refused_without_the_flag() -> None:
    with GearshiftServer() as server:
        console = Wire.to(server.address)
        assert console.admin(b"shutdown") == (
            b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n")
        assert console.admin(b"shutdown graceful").startswith(b"ERR UNKNOWN_COMMAND")
        time.sleep(0.2)
        assert proc_alive(server.pid)
        assert console.admin(b"version").startswith(b"OK ")


@pytest.mark.parametrize("command", [b"shutdown", b"shutdown graceful"])
def test_admin_shutdown_with_the_flag(command: bytes) -> None:
    with GearshiftServer(extra_args=["--allow-shutdown"]) as server:
        console = Wire.to(server.address)
        assert console.admin(command) == b"OK\r\n"
        assert _exit_code(server, 8) == 0


def test_admin_graceful_shutdown_waits_for_the_running_job() -> None:
    with GearshiftServer(extra_args=["--allow-shutdown", "--shutdown-timeout", "8"]) as server:
        client, worker = Wire.to(server.address), Wire.to(server.address)
        worker.send(P.CAN_DO, b"f")
        _, [handle] = client.call(P.SUBMIT_JOB, b"f", b"", b"x")
        assert worker.call(P.GRAB_JOB)[1][0] == handle
        assert Wire.to(server.address).admin(b"shutdown graceful") == b"OK\r\n"
        _wait_for(lambda: _refuses_connections(server), 5, "the listener to close")
        assert server.proc is not None
        assert server.proc.poll() is None  # still up: a job is running
        worker.send(P.WORK_COMPLETE, handle, b"r")
        assert client.recv() == (P.WORK_COMPLETE, [handle, b"r"])
        assert _exit_code(server, 5) == 0


# ---------------------------------------------------------------- bounded memory


def test_memory_stays_bounded_under_huge_declared_bodies() -> None:
    """200 peers each declare a 60 MB body (under the 64 MiB limit), send 1 KB and leave.
    gearmand would allocate what the header says; we must only hold what arrived."""
    with GearshiftServer() as server:
        round_trip(server.address)
        before = rss_kib(server.pid)
        hostile = header(P.SUBMIT_JOB, 60_000_000, REQ) + b"f\0\0" + b"z" * 1021
        for _batch in range(4):
            socks = [socket.create_connection((server.host, server.port), timeout=5)
                     for _ in range(50)]
            for sock in socks:
                sock.sendall(hostile)
            round_trip(server.address)  # served while 50 half-packets are buffered
            during = rss_kib(server.pid)
            for sock in socks:
                sock.close()
            assert during - before < 16 * 1024, f"RSS grew {during - before} KiB"
        round_trip(server.address)
        after = rss_kib(server.pid)
        assert after - before < 16 * 1024, f"RSS grew {after - before} KiB"


def test_a_client_that_never_reads_cannot_make_the_server_buffer_without_bound() -> None:
    """Pipelined 1 MB ECHOs from a peer that never reads its replies: the server must stop
    reading that peer (backpressure) rather than queue every echo in memory."""
    with GearshiftServer() as server:
        round_trip(server.address)
        before = rss_kib(server.pid)
        hog = socket.create_connection((server.host, server.port))
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        hog.settimeout(2)
        echo = encode_request(P.ECHO_REQ, b"z" * (1 << 20))
        sent = 0
        started = time.monotonic()
        try:
            while time.monotonic() - started < 4 and sent < 500:
                hog.sendall(echo)
                sent += 1
        except TimeoutError:
            pass  # the server stopped reading us: that is the point
        assert sent < 500, "the server read 500 MB from a peer that reads nothing back"
        grown = rss_kib(server.pid) - before
        assert grown < 64 * 1024, f"RSS grew {grown} KiB after {sent} MB of unread echoes"
        round_trip(server.address)  # everyone else is still served
        hog.close()


def test_oversized_declaration_is_refused_before_any_body(tmp_path: Path) -> None:
    with GearshiftServer(extra_args=["--max-packet-size", "65536"]) as server:
        bad = Wire.to(server.address)
        bad.send_raw(header(P.SUBMIT_JOB, 65537, REQ))  # header only: refused at once
        assert b"ARGUMENT_TOO_LARGE" in bad.closed_by_peer()
        round_trip(server.address)


def test_stop_leaves_no_process_behind() -> None:
    server = GearshiftServer().start()
    pid = server.pid
    try:
        round_trip(server.address)
    finally:
        code = server.stop()
    assert code == 0
    assert not proc_alive(pid)


def test_gearmand_option_spellings_are_accepted_and_take_effect() -> None:
    args = ["-t", "4", "-R", "-b", "64", "--keepalive", "--keepalive-idle", "30",
            "--keepalive-interval", "5", "--keepalive-count", "3", "--verbose", "WARNING",
            "--job-handle-prefix", "H:custom", "--exceptions"]
    with GearshiftServer(extra_args=args) as server:
        client, worker = Wire.to(server.address), Wire.to(server.address)
        worker.send(P.CAN_DO, b"f")
        _, [handle] = client.call(P.SUBMIT_JOB, b"f", b"", b"x")
        assert handle.startswith(b"H:custom")
        assert worker.call(P.GRAB_JOB)[1][0] == handle
        worker.send(P.WORK_EXCEPTION, handle, b"boom")
        # --exceptions: the client gets the exception without asking for it.
        assert client.recv() == (P.WORK_EXCEPTION, [handle, b"boom"])
        assert Wire.to(server.address).admin(b"verbose") == b"OK WARNING\n"
