"""Numbers in and out: parsing the way gearmand does it (C ``atoi``), shared by packets
and admin, and writing the decimal part of job handles."""

from __future__ import annotations

from typing import Final


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


#: ``b"%d" % i`` and ``b"%04d" % i`` for i < 10,000: handles are written per job, and
#: mypyc formats an int through a Python str (CPyTagged_AsciiBytes, ~215 instructions),
#: where picking table entries is a few dozen. 2 x 10,000 small byte strings, ~0.8 MB.
_PLAIN: Final = [b"%d" % i for i in range(10_000)]
_PADDED: Final = [b"%04d" % i for i in range(10_000)]


def decimal(n: int) -> tuple[bytes, bytes, bytes]:
    """``b"%d" % n`` (``n`` >= 0) as three pieces to concatenate, from the tables above
    up to 10**12 (a million jobs a second for 11 days), else formatted. A tuple of
    three is returned unboxed when compiled: no allocation."""
    if n < 10_000:
        return _PLAIN[n], b"", b""
    if n < 100_000_000:
        return _PLAIN[n // 10_000], _PADDED[n % 10_000], b""
    if n < 1_000_000_000_000:
        return _PLAIN[n // 100_000_000], _PADDED[n // 10_000 % 10_000], _PADDED[n % 10_000]
    return b"%d" % n, b"", b""
