"""Every scenario, registered by importing the modules that define them.

* :mod:`._scenarios_jobs`: the job life cycle (submit, grab, status, coalescing,
  priorities, wake-ups, requeues, epoch jobs);
* :mod:`._scenarios_admin`: the text admin protocol;
* :mod:`._scenarios_edges`: rejected/malformed input, framing, less common paths.
"""

from __future__ import annotations

from . import _scenarios_admin, _scenarios_edges, _scenarios_jobs
from ._script import SCENARIOS, Scenario

#: The modules above register their scripts in SCENARIOS when imported.
MODULES = (_scenarios_jobs, _scenarios_admin, _scenarios_edges)

__all__ = ["MODULES", "SCENARIOS", "Scenario"]
