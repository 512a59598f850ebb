"""Run one scenario against a freshly started server and return its transcript.

Also a small command line for looking at what a server does, which is how the scenarios
and docs/compatibility.md were written::

    python -m tests.differential._run gearmand echo grab_job
    python -m tests.differential._run gearshift            # every scenario
"""

from __future__ import annotations

import sys
import traceback

from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess

from ._scenarios import SCENARIOS, Scenario
from ._session import Session

SERVERS: dict[str, type[ServerProcess]] = {
    "gearmand": GearmandServer,
    "gearshift": GearshiftServer,
}


def run_scenario(kind: str, scenario: Scenario) -> list[str]:
    """Start a ``kind`` server with the scenario's flags, play the script, stop the server.

    A script that raises (e.g. a connection refused mid-way) is not a crash of the test
    run: the error is written into the transcript, where the comparison will show it.
    """
    with SERVERS[kind](extra_args=scenario.server_args) as server:
        session = Session(server.host, server.port)
        try:
            scenario.script(session)
        except Exception as exc:  # reported in the transcript, where the diff shows it
            last = traceback.extract_tb(exc.__traceback__)[-1]
            session.note(f"!! script stopped: {type(exc).__name__}: {exc} (line {last.lineno})")
        return session.finish()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SERVERS:
        print(f"usage: python -m tests.differential._run {{{'|'.join(SERVERS)}}} [SCENARIO...]",
              file=sys.stderr)
        return 2
    names = argv[1:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"## {name}")
        for line in run_scenario(argv[0], SCENARIOS[name]):
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
