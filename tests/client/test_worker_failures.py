"""How a raising job is reported: the worker's default ("auto") sends WORK_EXCEPTION with
the reason only on connections to a server that answered ``OPTION_REQ gearshift``, bare
WORK_FAIL elsewhere (gearmand), and always logs a WARNING with the traceback.

Real gearshift and gearmand servers for the sync and asyncio libraries; a scripted fake
server for what real servers never do (ignore the probe, answer it out of turn).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from gearshift.client import (
    AsyncClient,
    AsyncJob,
    AsyncWorker,
    Client,
    Job,
    JobException,
    JobFailed,
    Worker,
)
from gearshift.client._async._worker import MAX_REASON, failure_reason
from gearshift.protocol import REQ, ErrorCode, Packet, PacketReader, encode
from gearshift.protocol import PacketType as P
from gearshift.testing import ServerProcess

from .conftest import running, start_server

Names = Callable[[str], str]


def boom(job: Job) -> bytes:
    raise ValueError("no " + job.data.decode())


def assert_logged_failure(caplog: pytest.LogCaptureFixture, handle: bytes,
                          function: str) -> None:
    """One WARNING naming handle and function, with the traceback; no ERROR warnings."""
    records = [r for r in caplog.records if function in r.getMessage()]
    assert len(records) == 1, [r.getMessage() for r in caplog.records]
    record = records[0]
    assert record.levelno == logging.WARNING
    assert handle.decode() in record.getMessage()
    assert "ValueError: no way" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
    assert "Traceback" in caplog.text
    assert not [r for r in caplog.records if ": ERROR" in r.getMessage()]


def test_sync_auto_reason_reaches_client_on_gearshift_only(
        server: ServerProcess, fname: Names, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gearshift.client")
    worker = Worker([server.address])  # exceptions=None: auto
    worker.register(fname(), boom)
    with running(worker):
        with Client([server.address], timeout=10) as client, \
                pytest.raises(JobFailed) as info:
            client.submit(fname(), b"way")
        assert_logged_failure(caplog, info.value.handle, fname())
        with Client([server.address], timeout=10, exceptions=False) as plain, \
                pytest.raises(JobFailed) as plain_info:
            plain.submit(fname(), b"way")
    assert not isinstance(plain_info.value, JobException)  # converted by the server
    if server.name == "gearshift":
        assert isinstance(info.value, JobException)
        assert info.value.data == b"ValueError: no way"
    else:
        assert not isinstance(info.value, JobException)  # bare WORK_FAIL to gearmand


def test_async_auto_reason_reaches_client_on_gearshift_only(
        server: ServerProcess, fname: Names, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gearshift.client")

    async def main() -> tuple[JobFailed, JobFailed]:
        worker = AsyncWorker([server.address])

        @worker.function(fname())
        async def fail(job: AsyncJob) -> bytes:
            raise ValueError("no " + job.data.decode())

        task = asyncio.create_task(worker.run())
        try:
            async with AsyncClient([server.address], timeout=10) as client:
                with pytest.raises(JobFailed) as info:
                    await client.submit(fname(), b"way")
            async with AsyncClient([server.address], timeout=10, exceptions=False) as plain:
                with pytest.raises(JobFailed) as plain_info:
                    await plain.submit(fname(), b"way")
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)
        return info.value, plain_info.value

    error, plain_error = asyncio.run(main())
    assert not isinstance(plain_error, JobException)
    if server.name == "gearshift":
        assert isinstance(error, JobException)
        assert error.data == b"ValueError: no way"
    else:
        assert not isinstance(error, JobException)
    records = [r for r in caplog.records if fname() in r.getMessage()]
    assert len(records) == 2  # one WARNING per failed job
    assert all(r.levelno == logging.WARNING and r.exc_info for r in records)
    assert error.handle.decode() in records[0].getMessage()
    assert not [r for r in caplog.records if ": ERROR" in r.getMessage()]


def test_async_exceptions_false_never_sends_reason(server: ServerProcess,
                                                   fname: Names) -> None:
    async def main() -> None:
        worker = AsyncWorker([server.address], exceptions=False)
        worker.register(fname(), boom)
        task = asyncio.create_task(worker.run())
        try:
            async with AsyncClient([server.address], timeout=10) as client:
                with pytest.raises(JobFailed) as info:
                    await client.submit(fname(), b"way")
            assert not isinstance(info.value, JobException)
        finally:
            worker.stop()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())


@pytest.mark.gearmand
def test_gearmand_gets_bare_fail_and_probe_answer_is_quiet(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gearshift.client")
    with start_server("gearmand") as server:
        worker = Worker([server.address], concurrency=2)
        worker.register("gm_boom", boom)
        with running(worker), Client([server.address], timeout=10) as client:
            with pytest.raises(JobFailed) as info:
                client.submit("gm_boom", b"way")
            assert not isinstance(info.value, JobException)
            assert client.submit_background("gm_boom", b"way")
            deadline = time.monotonic() + 10
            # Both of the worker's connections answer the probe, each in its own time:
            # wait for both answers too (the second could come after the jobs, and
            # once the worker stopped it never would).
            while (worker.jobs_done < 2 or _probe_answers(caplog) < 2) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
    assert worker.jobs_done == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert all("gm_boom" in m for m in warnings), warnings
    # Both connections got ERROR UNKNOWN_OPTION, and took it as the probe's answer.
    assert _probe_answers(caplog) == 2


def _probe_answers(caplog: pytest.LogCaptureFixture) -> int:
    return sum("is not gearshift" in r.getMessage() for r in caplog.records)


@pytest.fixture
def own_gearshift() -> Iterator[ServerProcess]:
    proc = start_server("gearshift")
    try:
        yield proc
    finally:
        proc.__exit__(None, None, None)


def test_probe_is_repeated_after_reconnect(own_gearshift: ServerProcess) -> None:
    worker = Worker([own_gearshift.address])
    worker.register("reconnect_boom", boom)
    with running(worker):
        # Registered once before the kill (else the first registration could be the one
        # made after the restart, and the count below would never reach 2).
        deadline = time.monotonic() + 15
        while worker.registrations(own_gearshift.address) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.registrations(own_gearshift.address) == 1
        own_gearshift.kill()
        time.sleep(0.3)
        own_gearshift.start()
        deadline = time.monotonic() + 15
        while worker.registrations(own_gearshift.address) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.registrations(own_gearshift.address) == 2
        with Client([own_gearshift.address], timeout=10) as client, \
                pytest.raises(JobException) as info:
            client.submit("reconnect_boom", b"way")
    assert info.value.data == b"ValueError: no way"


# ------------------------------------------------------------- scripted fake server

def fake_server(probe_answer: bytes | None) -> tuple[socket.socket, list[Packet],
                                                      threading.Thread]:
    """One connection: answers OPTION_REQ with ``probe_answer`` (or not at all), hands out
    one job, answers its WORK_* with ERROR JOB_NOT_FOUND, then says NO_JOB."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[Packet] = []

    def serve() -> None:
        conn, _ = listener.accept()
        reader = PacketReader(expect=REQ, allow_text=False)
        assigned = False
        with conn:
            while data := conn.recv(65536):
                for ptype, fields in reader.feed(data):
                    received.append((ptype, fields))
                    if ptype == P.OPTION_REQ and probe_answer is not None:
                        conn.sendall(probe_answer)
                    elif ptype == P.GRAB_JOB_ALL and not assigned:
                        assigned = True
                        conn.sendall(encode(P.JOB_ASSIGN, b"H:fake:1", b"fake_fn", b"way"))
                    elif ptype == P.GRAB_JOB_ALL:
                        conn.sendall(encode(P.NO_JOB))
                    elif ptype in (P.WORK_FAIL, P.WORK_EXCEPTION):
                        conn.sendall(encode(P.ERROR, ErrorCode.JOB_NOT_FOUND, b"stray"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, received, thread


@pytest.mark.parametrize(("answer", "expected"), [
    (encode(P.OPTION_RES, b"gearshift"), P.WORK_EXCEPTION),
    (encode(P.ERROR, ErrorCode.UNKNOWN_OPTION, b"Server does not recognize given option"),
     P.WORK_FAIL),
    (None, P.WORK_FAIL),  # a server that ignores the probe: nothing waits for it
])
def test_probe_answers_and_errors_are_told_apart(
        answer: bytes | None, expected: P, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gearshift.client")
    listener, received, thread = fake_server(answer)
    with listener:
        port = listener.getsockname()[1]
        worker = Worker([f"127.0.0.1:{port}"])
        worker.register("fake_fn", boom)
        runner = threading.Thread(target=worker.run, kwargs={"stop_when_idle": True})
        runner.start()
        runner.join(10)
        assert not runner.is_alive()
    thread.join(10)
    assert received[0] == (P.OPTION_REQ, [b"gearshift"])  # first, before registering
    reports = [p for p in received if p[0] in (P.WORK_FAIL, P.WORK_EXCEPTION)]
    if expected == P.WORK_EXCEPTION:
        assert reports == [(P.WORK_EXCEPTION, [b"H:fake:1", b"ValueError: no way"])]
    else:
        assert reports == [(P.WORK_FAIL, [b"H:fake:1"])]
    errors = [r.getMessage() for r in caplog.records if ": ERROR" in r.getMessage()]
    assert len(errors) == 1, errors  # UNKNOWN_OPTION is quiet
    assert "JOB_NOT_FOUND" in errors[0]
    assert [r.levelno for r in caplog.records if "fake_fn" in r.getMessage()] == [
        logging.WARNING]


def test_explicit_modes_do_not_probe() -> None:
    for mode in (True, False):
        listener, received, thread = fake_server(None)
        with listener:
            worker = Worker([f"127.0.0.1:{listener.getsockname()[1]}"], exceptions=mode)
            worker.register("fake_fn", boom)
            worker.run(stop_when_idle=True)
        thread.join(10)
        assert P.OPTION_REQ not in [p[0] for p in received]
        sent = P.WORK_EXCEPTION if mode else P.WORK_FAIL
        assert [p[0] for p in received if p[0] in (P.WORK_FAIL, P.WORK_EXCEPTION)] == [sent]


def test_failure_reason_is_bounded_utf8() -> None:
    assert failure_reason(ValueError("bad input")) == b"ValueError: bad input"
    assert failure_reason(KeyError()) == b"KeyError"
    long = failure_reason(RuntimeError("é" * 10_000))
    assert len(long) <= MAX_REASON
    assert long.startswith(b"RuntimeError: \xc3\xa9")
    assert long.endswith(b" [...]")
    long.decode()  # cut between characters, never inside one

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert failure_reason(Unprintable()) == b"Unprintable: <unprintable>"
