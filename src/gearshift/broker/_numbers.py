"""Number parsing the way gearmand does it (C ``atoi``), shared by packets and admin."""

from __future__ import annotations


def atoi(raw: bytes) -> int:
    """Leading optional sign and digits, else 0: how gearmand reads counts and limits."""
    digits = bytearray()
    for i, ch in enumerate(raw.strip()):
        if 48 <= ch <= 57 or (i == 0 and ch in b"+-"):
            digits.append(ch)
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0
