"""Third-party projects' own published test suites, pointed at gearmand and at gearshift.

Only gear ships server-driven tests that can be aimed at a running server (its wheel
carries ``gear/tests``; ``peers/gear_suite.py`` swaps its in-process ``gear.Server`` for
the server under test). Perl's Debian package ships no tests (its CPAN release's ``t/*.t``
run in test_perl_suite.py, from the source package), python-gearman's wheel none,
and the npm ``gearman`` package's tests are codec unit tests that never open a socket.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from gearshift.testing import ServerProcess

from ._peers import PEERS

#: gear's test expects WORK_EXCEPTION to reach a client that never sent OPTION_REQ
#: exceptions; gear's own server forwards it, gearmand sends WORK_FAIL instead.
GEAR_FAILS_ON_GEARMAND = [
    "gear.tests.test_functional.TestFunctionalText.test_text_job_exception",
]


def test_gear_functional_suite(server: ServerProcess,
                               record_property: Callable[[str, object], None]) -> None:
    """gear.tests.test_functional: the same tests pass (and fail) as on gearmand."""
    proc = subprocess.run([sys.executable, str(PEERS / "gear_suite.py"), server.host,
                           str(server.port)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("passed", "skipped"):
        record_property(key, res[key])
    record_property("failed", len(res["failed"]))
    assert res["failed"] == GEAR_FAILS_ON_GEARMAND, proc.stderr[-3000:]
    assert res["passed"] >= 7, res


def test_gear_functional_suite_tls_scenarios(record_property: Callable[[str, object],
                                                                      None]) -> None:
    """gear's TLS scenarios (its certificates, client certificates required) against
    ``gearshift serve --ssl --ssl-ca-file``: gear is a real third-party TLS client."""
    proc = subprocess.run([sys.executable, str(PEERS / "gear_suite.py"), "--tls"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    record_property("passed", res["passed"])
    assert res["failed"] == [], proc.stderr[-3000:]
    assert res["passed"] >= 4, res  # test_job, test_bg_job, worker termination, text name
