"""Retry policies for background jobs: ``--retry FUNC=ATTEMPTS[:BASE[:MAX]]``.

A background job whose worker fails, raises, times out or disappears is queued again
after an exponential delay (BASE, 2 x BASE, 4 x BASE ... capped at MAX) with jitter, up
to ATTEMPTS attempts in all; then it is a dead letter. Without a policy, gearmand's
behaviour stands (a failed job ends; a lost worker's job is requeued at once, up to
``-j``). Policies are matched to function names once, when a function is first seen,
so the dispatcher pays nothing per job for them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gearshift._units import parse_duration
from gearshift.broker._patterns import FunctionPatterns

#: Delay before the second attempt when a policy names no BASE.
DEFAULT_BASE_S = 1.0
#: Longest delay between attempts when a policy names no MAX.
DEFAULT_MAX_S = 600.0
#: Each delay is scaled by a random factor in [1 - JITTER, 1 + JITTER] (then capped), so
#: jobs that failed together (a database went down) do not all come back together.
JITTER = 0.2


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, one function's background jobs are tried."""

    pattern: str
    attempts: int
    base: float = DEFAULT_BASE_S
    cap: float = DEFAULT_MAX_S

    def delay(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait before the attempt after the ``failures``-th failure (1 = the
        first failed): BASE x 2^(failures-1) with jitter, at most MAX."""
        exponent = min(max(failures - 1, 0), 62)
        raw = self.base * (2.0 ** exponent)
        return min(self.cap, raw * rng.uniform(1.0 - JITTER, 1.0 + JITTER))

    @property
    def spec(self) -> str:
        """The policy as it would be written on the command line."""
        return f"{self.pattern}={self.attempts}:{self.base:g}s:{self.cap:g}s"


def parse_retry(spec: str) -> RetryPolicy:
    """``resize=5:2s:10m`` -> RetryPolicy. The pattern may be a glob (``*``, ``img.*``).

    Raises:
        ValueError: naming the offending text.
    """
    pattern, sep, rest = spec.partition("=")
    pattern = pattern.strip()
    if not sep or not pattern or not rest.strip():
        raise ValueError(f"--retry {spec!r}: expected FUNC=ATTEMPTS[:BASE[:MAX]], "
                         "e.g. 'resize=5:2s:10m' or '*=3'")
    parts = rest.split(":")
    if len(parts) > 3:
        raise ValueError(f"--retry {spec!r}: at most ATTEMPTS:BASE:MAX after '='")
    try:
        attempts = int(parts[0])
    except ValueError:
        raise ValueError(f"--retry {spec!r}: ATTEMPTS {parts[0]!r} is not a whole number") \
            from None
    if attempts < 1:
        raise ValueError(f"--retry {spec!r}: ATTEMPTS must be at least 1 (1 = no retry)")
    try:
        base = parse_duration(parts[1]) if len(parts) > 1 else DEFAULT_BASE_S
        cap = parse_duration(parts[2]) if len(parts) > 2 else max(DEFAULT_MAX_S, base)
    except ValueError as exc:
        raise ValueError(f"--retry {spec!r}: {exc}") from None
    if cap < base:
        raise ValueError(f"--retry {spec!r}: MAX ({parts[2]}) is shorter than BASE ({parts[1]})")
    return RetryPolicy(pattern, attempts, base, cap)


class RetryPolicies(FunctionPatterns[RetryPolicy]):
    """The configured ``--retry`` policies (matching: :mod:`._patterns`)."""

    @property
    def policies(self) -> list[RetryPolicy]:
        return self.rules

    def for_function(self, name: bytes) -> RetryPolicy | None:
        """The policy for function ``name``, or None (gearmand's behaviour)."""
        return self.match(name)
