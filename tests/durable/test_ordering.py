"""Replies on one connection stay in request order while JOB_CREATED waits for a commit.

libgearman (and every pipelining client) matches each JOB_CREATED to the submission
sent in the same position: ``gearman_client_run_tasks`` writes all its submissions and
then reads. gearmand writes its queue synchronously, so its replies are in order. A
durable gearshift holds a background job's JOB_CREATED until the group commit; if the
replies that follow (a coalesced submission, a foreground submission, an ECHO) overtook
it, the client would attach the wrong handles to its tasks.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from gearshift.protocol import encode_request
from gearshift.testing import GearmandServer, GearshiftServer, gearmand_path

from ._link import Link, P
from .conftest import Target


def pipelined_replies(server: GearshiftServer | GearmandServer) -> list[tuple[int, list[bytes]]]:
    with Link(server.host, server.port) as client:
        queued = client.submit(P.SUBMIT_JOB_BG, b"f", b"old", b"0")
        client.send_raw(b"".join([
            encode_request(P.SUBMIT_JOB_BG, b"f", b"new-1", b"1"),     # written to the store
            encode_request(P.SUBMIT_JOB_BG, b"f", b"old", b"0"),       # coalesces: no write
            encode_request(P.SUBMIT_JOB, b"f", b"", b"2"),             # foreground: no write
            encode_request(P.SUBMIT_JOB_LOW_BG, b"f", b"new-2", b"3"),  # written
            encode_request(P.ECHO_REQ, b"end"),
        ]))
        replies = [client.read() for _ in range(5)]
        assert replies[1] == (P.JOB_CREATED, [queued]), "coalesced reply out of place"
        return replies


@pytest.mark.timeout(60)
def test_pipelined_replies_keep_request_order(sqlite_target: Target) -> None:
    with GearshiftServer(store=sqlite_target.url) as server:
        replies = pipelined_replies(server)
    assert [kind for kind, _ in replies] == [P.JOB_CREATED] * 4 + [P.ECHO_RES]
    handles = [fields[0] for _, fields in replies[:4]]
    assert len(set(handles)) == 4
    # Handles are numbered in submission order, so new-1 < foreground < new-2.
    serials = [int(h.rsplit(b".", 1)[1]) for h in (handles[0], handles[2], handles[3])]
    assert serials == sorted(serials), f"JOB_CREATED out of order: {handles}"


@pytest.mark.gearmand
@pytest.mark.timeout(60)
def test_gearmand_reference_order() -> None:
    """The behaviour matched above, recorded from the reference server."""
    if gearmand_path() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("gearmand is not installed (CI=true: apt-get install gearman-job-server)")
        pytest.skip("gearmand is not installed")
    with GearmandServer() as server:
        replies = pipelined_replies(server)
    assert [kind for kind, _ in replies] == [P.JOB_CREATED] * 4 + [P.ECHO_RES]


def php_gearman() -> str:
    """The php binary, if it has the gearman extension; skip (or fail under CI) if not."""
    php = shutil.which("php")
    if php is not None:
        modules = subprocess.run([php, "-m"], capture_output=True, text=True, timeout=30)
        if "gearman" in modules.stdout.split():
            return php
    message = "php-cli with php-gearman is not installed (apt-get install php-cli php-gearman)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.interop
@pytest.mark.timeout(60)
def test_libgearman_pairs_handles_with_the_right_tasks(sqlite_target: Target) -> None:
    """php-gearman's run_tasks with one task coalescing onto a queued job between two
    that must be written first: every task must get its own job's handle."""
    php = php_gearman()
    script = os.path.join(os.path.dirname(__file__), "pipelined_tasks.php")
    uniques = ["new-1", "old", "new-2", "new-3"]
    with GearshiftServer(store=sqlite_target.url) as server:
        with Link(server.host, server.port) as client:
            client.submit(P.SUBMIT_JOB_BG, b"f", b"old", b"data-old")
        result = subprocess.run([php, script, server.host, str(server.port), *uniques],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        paired = dict(line.split(" ") for line in result.stdout.splitlines())
        assert sorted(paired) == sorted(uniques), result.stdout
        # Which job really is behind each handle: ask a worker.
        actual: dict[str, str] = {}
        with Link(server.host, server.port) as worker:
            worker.send(P.CAN_DO, b"f")
            while (got := worker.grab()) is not None:
                actual[got[2].decode()] = got[0].decode()
                worker.send(P.WORK_COMPLETE, got[0], b"")
    assert paired == actual, f"libgearman paired handles with the wrong tasks: {paired}"
