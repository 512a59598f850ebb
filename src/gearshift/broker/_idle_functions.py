"""Which function records hold nothing (``--max-idle-functions``).

gearmand keeps a record for every function name ever mentioned, so endless new names
grow it without bound. A record with no jobs, workers or settings of its own can be
forgotten: the next mention recreates it with the same startup settings (``--retry``,
``--max-queue``). :class:`~gearshift.broker._core.BrokerState` decides when to sweep.
"""

from __future__ import annotations

from collections.abc import Sequence

from gearshift.broker._config import BrokerConfig
from gearshift.broker._model import Function


def is_idle(func: Function, ready: Sequence[dict[Function, None]],
            config: BrokerConfig) -> bool:
    """Nothing would be lost by forgetting ``func``."""
    if func.total or func.workers or func.sleepers or func.uniques or func.payloads:
        return False
    if func.pages is not None and any(func.pages.loading):
        return False  # a deep queue's page is being read for it
    if any(func in runnable for runnable in ready):
        return False
    configured = config.max_queue.for_function(func.name) if config.max_queue else None
    return func.max_queue == (list(configured) if configured is not None else [0, 0, 0])


def without_idle(functions: dict[bytes, Function], ready: Sequence[dict[Function, None]],
                 config: BrokerConfig) -> tuple[dict[bytes, Function], int]:
    """The records worth keeping, as a new dict (a dict never shrinks its table in
    place), and how many were left out."""
    kept = {name: func for name, func in functions.items()
            if not is_idle(func, ready, config)}
    return kept, len(functions) - len(kept)
