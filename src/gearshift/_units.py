"""Durations and sizes as operators write them on a command line (``2s``, ``10m``,
``64MiB``), parsed in one place so every flag reads them alike and fails alike."""

from __future__ import annotations

import re
from typing import Final

_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$", re.IGNORECASE)
_SECONDS: Final = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_BYTES: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(text: str) -> float:
    """Seconds from ``"1.5"``, ``"200us"``, ``"500ms"``, ``"2s"``, ``"10m"``, ``"1h"`` or ``"7d"``.

    Raises:
        ValueError: naming the text, for anything else (negative values included).
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (examples: 500ms, 2s, 10m, 1h, 7d)")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


def parse_size(text: str) -> int:
    """Bytes from ``"4096"``, ``"64k"``, ``"64KiB"``, ``"256MB"``, ``"1G"`` (binary units).

    Raises:
        ValueError: naming the text, for anything else.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (examples: 4096, 64KiB, 256MiB, 1GiB)")
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _BYTES[unit])
