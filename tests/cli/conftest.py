"""Fixtures for the CLI tests: real servers (gearshift and gearmand), real subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, gearmand_path


@pytest.fixture(scope="module", params=["gearshift", "gearmand"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    if request.param == "gearmand":
        if gearmand_path() is None:
            pytest.skip("gearmand is not installed (apt-get install gearman-job-server)")
        proc: ServerProcess = GearmandServer(extra_args=["--threads", "0"])
    else:
        proc = GearshiftServer()
    with proc:
        yield proc


def gearshift(args: Sequence[str], stdin: bytes = b"", timeout: float = 30,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m gearshift ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "gearshift", *args], input=stdin,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def spawn(args: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``python -m gearshift ARGS`` in the background (the caller waits or kills)."""
    return subprocess.Popen([sys.executable, "-m", "gearshift", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
