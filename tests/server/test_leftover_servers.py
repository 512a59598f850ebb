"""``gearshift.testing``: a server a test forgot to stop does not outlive the test run."""

from __future__ import annotations

import subprocess
import sys
import time

from ._wire import proc_alive

FORGETFUL = """
from gearshift.testing import GearshiftServer
server = GearshiftServer(store="memory").start()
print(server.pid, flush=True)
# exits without server.stop()
"""


def test_a_server_left_running_is_killed_when_its_starter_exits() -> None:
    done = subprocess.run([sys.executable, "-c", FORGETFUL], capture_output=True, text=True,
                          timeout=60, check=True)
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 5
    while proc_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proc_alive(pid), f"server {pid} outlived the process that started it"
