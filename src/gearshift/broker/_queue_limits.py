"""Queue caps set at startup: ``--max-queue FUNC=N`` or ``FUNC=HIGH,NORMAL,LOW``.

The admin ``maxqueue`` command caps a function that exists; a server exposed to many
clients needs the cap from the first job on, before any admin has connected. Rules are
matched to a function's name once, when the function is first seen (as ``--retry``
policies are), so a submission pays nothing for them: it reads ``Function.max_queue``
as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass

from gearshift.broker._patterns import FunctionPatterns


@dataclass(frozen=True, slots=True)
class QueueLimit:
    """One function pattern's per-priority caps (high, normal, low); 0 = unlimited."""

    pattern: str
    limits: tuple[int, int, int]

    @property
    def spec(self) -> str:
        """The cap as it would be written on the command line."""
        return f"{self.pattern}={','.join(map(str, self.limits))}"


def parse_max_queue(spec: str) -> QueueLimit:
    """``resize=100`` or ``resize=10,100,1000`` -> QueueLimit; the pattern may be a glob.

    Raises:
        ValueError: naming the offending text.
    """
    pattern, sep, rest = spec.partition("=")
    pattern = pattern.strip()
    if not sep or not pattern or not rest.strip():
        raise ValueError(f"--max-queue {spec!r}: expected FUNC=N or FUNC=HIGH,NORMAL,LOW, "
                         "e.g. 'resize=1000' or '*=100000'")
    parts = [p.strip() for p in rest.split(",")]
    if len(parts) not in (1, 3):
        raise ValueError(f"--max-queue {spec!r}: give one number for every priority or "
                         "three (HIGH,NORMAL,LOW)")
    values = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise ValueError(f"--max-queue {spec!r}: {part!r} is not a whole number") \
                from None
        if value < 0:
            raise ValueError(f"--max-queue {spec!r}: {part!r} is negative (0 = unlimited)")
        values.append(value)
    if len(values) == 1:
        values *= 3
    return QueueLimit(pattern, (values[0], values[1], values[2]))


class QueueLimits(FunctionPatterns[QueueLimit]):
    """The configured ``--max-queue`` caps (matching: :mod:`._patterns`)."""

    def for_function(self, name: bytes) -> tuple[int, int, int] | None:
        """The caps for function ``name``, or None (unlimited)."""
        rule = self.match(name)
        return None if rule is None else rule.limits
