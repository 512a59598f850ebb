"""Polling for a condition in tests: readiness is checked, never slept for."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], object], what: str = "condition",
               timeout: float = 15.0, interval: float = 0.02) -> float:
    """Seconds it took ``condition()`` to become true.

    Raises:
        TimeoutError: naming ``what``, once ``timeout`` seconds passed without it.
    """
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started >= timeout:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        time.sleep(interval)
    return time.monotonic() - started
