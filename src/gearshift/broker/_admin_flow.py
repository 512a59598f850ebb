"""Admin text commands for flow control (gearmand has none):

* ``pause FUNCTION`` -> ``OK``: the function accepts and queues jobs but none is handed
  out (workers asking get another function's job or NO_JOB) until ``resume``.
* ``resume FUNCTION`` -> ``OK``: lifts a pause, and a concurrency limit of 0.
* ``limit FUNCTION concurrency=N|none|- rate=N/s|N/m|N/h|none|- weight=W|-`` (any of
  them; ``-`` goes back to the startup rule) or ``limit FUNCTION reset`` -> ``OK``.
* ``limits`` -> one JSON object per function with a limit, pause or weight (and per
  admin setting for a function not seen yet), ending with ``.``.

* ``drain`` (or ``drain on``) -> ``OK``: the whole server refuses new submissions with
  ``ERROR QUEUE_ERROR`` and goes on handing out and finishing the jobs it has; ``drain
  off`` accepts them again; ``drain status`` -> ``OK on|off``. Not persisted: a restart
  accepts jobs again.

Changes apply at once, are kept in the store and survive a restart. ``status`` is
unchanged (third-party tools parse its four columns); ``limits`` is where pauses and
usage show. Answers follow gearmand's conventions (``OK\\r\\n``, ``ERR CODE text+with+
pluses``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from gearshift.broker._core import MAX_FLOW_NAME
from gearshift.broker._flow import FlowSetting
from gearshift.broker._lifecycle import JobLifecycle
from gearshift.broker._model import Function

OK: Final = b"OK\r\n"
END: Final = b".\n"


def _err(code: bytes, text: str) -> bytes:
    return b"ERR " + code + b" " + text.replace(" ", "+").encode() + b"\r\n"


def flow_record(broker: JobLifecycle, name: bytes, func: Function | None) -> dict[str, Any]:
    """What ``limits`` (and the HTTP API) report for one function."""
    setting = broker.flow_setting(name)
    override = broker.flow_overrides.get(name)
    flow = func.flow if func is not None else None
    concurrency = setting.concurrency
    record: dict[str, Any] = {
        "function": name.decode("utf-8", "replace"),
        "concurrency": concurrency if concurrency is not None and concurrency >= 0 else None,
        "rate": setting.rate.text if setting.rate is not None and setting.rate.count else None,
        "weight": setting.weight or 1,
        "paused": setting.paused,
        "admin": override.text if override is not None else None,
        "running": func.running if func is not None else 0,
        "queued": sum(func.queued) + func.scheduled if func is not None else 0,
        "held": func.blocked if func is not None else False,
    }
    if flow is not None and flow.per_second > 0.0:
        flow.refill(broker.clock())
        record["tokens"] = round(flow.tokens, 3)
    return record


def flow_records(broker: JobLifecycle) -> list[dict[str, Any]]:
    """Every function with flow settings, then admin settings of unseen functions."""
    records = [flow_record(broker, name, func) for name, func in broker.functions.items()
               if func.flow is not None or name in broker.flow_overrides]
    records += [flow_record(broker, name, None) for name in broker.flow_overrides
                if name not in broker.functions]
    return records


class FlowCommands:
    """The commands above, over a broker's state."""

    def __init__(self, broker: JobLifecycle) -> None:
        self.broker = broker
        self.table: dict[bytes, Callable[[list[bytes]], bytes]] = {
            b"pause": self.pause,
            b"resume": self.resume,
            b"limit": self.limit,
            b"limits": self.limits,
            b"drain": self.drain,
        }

    def _change(self, name: bytes, words: list[str]) -> bytes:
        broker = self.broker
        if len(name) > MAX_FLOW_NAME:
            return _err(b"INVALID_ARGUMENTS", f"function names of flow settings are at most "
                        f"{MAX_FLOW_NAME} bytes")
        current = broker.flow_overrides.get(name, FlowSetting())
        try:
            if words == ["reset"]:
                override = FlowSetting()
            else:
                override = current.updated(words)
                base = broker.config.flow.for_function(name)
                if words == ["resumed"] and override.over(base).concurrency == 0:
                    # A limit of 0 is a pause too: resume lifts it.
                    override = override.updated(["concurrency=none"])
        except ValueError as exc:
            return _err(b"INVALID_ARGUMENTS", str(exc))
        if not broker.set_flow(name, override):
            return _err(b"QUEUE_ERROR", "too many flow settings kept")
        return OK

    def pause(self, words: list[bytes]) -> bytes:
        if len(words) != 2:
            return _err(b"INVALID_ARGUMENTS", "usage: pause FUNCTION")
        return self._change(words[1], ["paused"])

    def resume(self, words: list[bytes]) -> bytes:
        if len(words) != 2:
            return _err(b"INVALID_ARGUMENTS", "usage: resume FUNCTION")
        return self._change(words[1], ["resumed"])

    def limit(self, words: list[bytes]) -> bytes:
        if len(words) < 3:
            return _err(b"INVALID_ARGUMENTS", "usage: limit FUNCTION concurrency=N|none "
                        "rate=N/s|none weight=W (- = the startup rule) | limit FUNCTION reset")
        return self._change(words[1], [w.decode("utf-8", "replace") for w in words[2:]])

    def drain(self, words: list[bytes]) -> bytes:
        """``drain`` / ``drain off``: refuse new submissions (or accept them again);
        ``drain status`` -> ``OK on|off``."""
        rest = [w.lower() for w in words[1:]]
        if rest == [b"status"]:
            return b"OK on\n" if self.broker.refusing else b"OK off\n"
        if rest not in ([], [b"on"], [b"off"]):
            return _err(b"INVALID_ARGUMENTS", "usage: drain [on|off|status]")
        self.broker.refusing = rest != [b"off"]
        return OK

    def limits(self, words: list[bytes]) -> bytes:
        lines = [json.dumps(r, separators=(",", ":"), ensure_ascii=True).encode("ascii")
                 + b"\n" for r in flow_records(self.broker)]
        return b"".join(lines) + END
