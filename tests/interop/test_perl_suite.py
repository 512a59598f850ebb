"""Perl Gearman::Client's own test suite (the ``t/*.t`` of its CPAN release), file by file,
against gearmand and against gearshift.

Debian's ``libgearman-client-perl`` ships no tests, so scripts/install_interop.sh fetches
the CPAN tarball (Debian's source package) into ``tests/interop/.perl`` and applies
``tests/interop/perl/*.patch``. Each file runs under ``prove`` with
``GEARMAND_ADDR=host:port`` (the suite's switch for "use this running server") and
``AUTHOR_TESTING=1`` (which turns on the WORK_DATA / WORK_WARNING / WORK_FAIL tests), on a
fresh server of its own: a file that leaves a job behind (``t/16-background.t`` does, by
design) cannot change the next file's outcome. A file that fails on gearmand too is an
``xfail(strict=True)`` with the reason, like the other interop tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest

from gearshift.testing import (
    GearmandServer,
    GearshiftServer,
    ServerProcess,
    gearmand_path,
    make_tls_files,
)

from .conftest import SERVER_KINDS, have

#: Where scripts/install_interop.sh unpacks the release (git-ignored).
SUITE_ROOT: Final = Path(__file__).resolve().parent / ".perl"

#: The test files of Gearman 2.004.015 (Debian bookworm), listed so that a missing or
#: changed suite fails here instead of silently running fewer files.
TEST_FILES: Final = (
    "00-use.t", "01-object.t", "02-client.t", "03-worker.t", "04-task.t", "05-taskset.t",
    "06-response-parser.t", "07-response-parser-taskset.t", "08-jobstatus.t",
    "09-connect.t", "10-job.t", "11-unit.t", "12-sum.t", "13-fail.t", "14-sleep.t",
    "15-priority.t", "16-background.t", "17-status.t", "18-ssl.t",
    "20-send-work-command.t", "25-work-finish-command.t", "40-prefix.t",
    "50-wait_timeout.t", "65-responseparser.t",
)

#: Files run by a test of their own below: skipped here, visibly, with the reason.
NEEDS: Final = {
    "18-ssl.t": "needs a TLS listener and certificates: run over TLS against gearshift "
                "by test_perl_ssl_file_over_tls (Debian's gearmand 1.1.20 accepts --ssl "
                "but serves plaintext: docs/operations.md)",
}

_SLEEP_T: Final = (
    "its workers send CAN_DO_TIMEOUT 3 meaning seconds (Gearman::Server's reading); "
    "gearmand reads milliseconds, raised to its 1 s minimum, so a job that sleeps 1 s "
    "overruns, is requeued, and the requeue repeats until the file is killed (workers "
    "die on the late result's JOB_NOT_FOUND). gearshift reads it as gearmand does."
)

#: Files that fail against gearmand as well, by server kind: a quirk of the suite or of
#: the reference server, not something gearshift must copy.
FAILS_ON: Final[dict[tuple[str, str], str]] = {
    ("gearmand", "14-sleep.t"): _SLEEP_T,
    ("gearshift", "14-sleep.t"): _SLEEP_T,
}

#: Longest one file may take (the slowest passing file takes ~12 s here; two shared cores).
FILE_TIMEOUT: Final = 40.0


def _suite_dir() -> Path:
    found = sorted(SUITE_ROOT.glob("Gearman-*"))
    if not found or not (found[-1] / "t").is_dir():
        pytest.fail("Perl Gearman::Client's suite is not unpacked: run scripts/install_interop.sh")
    return found[-1]


def _fresh_server(kind: str) -> ServerProcess:
    if kind == "gearmand" and gearmand_path() is None:
        pytest.fail("gearmand is not installed: run scripts/install_interop.sh")
    return GearmandServer() if kind == "gearmand" else GearshiftServer()


def _prove(suite: Path, test_file: str, address: str,
           extra_env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """Run one file under prove; (exit status or None on timeout, combined output).

    Its own session, so a timeout can kill the workers the file forked as well.
    """
    env = dict(os.environ, AUTHOR_TESTING="1", GEARMAND_ADDR=address, **(extra_env or {}))
    proc = subprocess.Popen(
        ["prove", "-v", "--exec", "perl -Ilib", f"t/{test_file}"], cwd=suite, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    status: int | None
    try:
        out, _ = proc.communicate(timeout=FILE_TIMEOUT)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        status = None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers: forked workers
    if status is None:
        out, _ = proc.communicate()
    return status, out.decode(errors="replace")


def test_the_suite_is_the_release_we_know() -> None:
    """Every file of the release is run below, and no other exists."""
    suite = _suite_dir()
    assert sorted(p.name for p in (suite / "t").glob("*.t")) == sorted(TEST_FILES)


@pytest.fixture(params=SERVER_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def fresh_server(kind: str) -> Iterator[ServerProcess]:
    with _fresh_server(kind) as srv:
        yield srv


@pytest.mark.timeout(FILE_TIMEOUT + 30)
@pytest.mark.parametrize("test_file", TEST_FILES)
def test_perl_suite_file(test_file: str, kind: str, request: pytest.FixtureRequest,
                         record_property: Callable[[str, object], None]) -> None:
    """One t/*.t file passes against this server (as it does against gearmand)."""
    if test_file in NEEDS:
        pytest.skip(f"t/{test_file} {NEEDS[test_file]}")
    if not have("prove"):
        pytest.fail("prove (perl) is not installed: run scripts/install_interop.sh")
    reason = FAILS_ON.get((kind, test_file))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    suite = _suite_dir()
    server: ServerProcess = request.getfixturevalue("fresh_server")
    status, out = _prove(suite, test_file, server.address)
    record_property("exit_status", status)
    assert status is not None, f"t/{test_file} still running after {FILE_TIMEOUT:g} s:\n" \
                               f"{out[-3000:]}"
    assert status == 0, f"t/{test_file} failed against {kind}:\n{out[-3000:]}"
    skipped = re.search(r"^t/\S+ \.+ skipped: (.*)$", out, re.MULTILINE)
    if skipped and "Result: NOTESTS" in out:
        # The file's own decision, e.g. t/09-connect.t when connecting to TEST-NET fails
        # at once (no route) instead of timing out: it tests the client, not a server.
        pytest.skip(f"t/{test_file} skipped itself: {skipped.group(1)}")
    assert "All tests successful" in out, out[-3000:]


@pytest.mark.timeout(FILE_TIMEOUT + 30)
def test_perl_ssl_file_over_tls(tmp_path: Path) -> None:
    """t/18-ssl.t: Gearman::Client and Gearman::Worker over TLS (IO::Socket::SSL) against
    ``gearshift serve --ssl`` with client certificates required, verifying the server's
    certificate against the test CA."""
    if not have("prove"):
        pytest.fail("prove (perl) is not installed: run scripts/install_interop.sh")
    files = make_tls_files(tmp_path)
    server = GearshiftServer(extra_args=files.serve_args(with_ca=True))
    server.tls = files.client_context()
    with server:
        # SSL_CERT_FILE is also OpenSSL's default-CA variable: set here for prove only
        status, out = _prove(_suite_dir(), "18-ssl.t", server.address, {
            "SSL_GEARMAND_HOST": server.host, "SSL_GEARMAND_PORT": str(server.port),
            "SSL_CERT_FILE": files.client_cert, "SSL_KEY_FILE": files.client_key,
            "SSL_CA_FILE": files.ca})
    assert status == 0, f"t/18-ssl.t failed over TLS:\n{out[-3000:]}"
    assert "All tests successful" in out, out[-3000:]
    assert "skipped" not in out.split("All tests successful")[0].splitlines()[-1]
