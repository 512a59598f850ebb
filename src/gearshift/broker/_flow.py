"""Flow control settings: ``--concurrency FUNC=N``, ``--rate FUNC=N/s``, ``--weight
FUNC=W``, and what the admin commands ``pause``, ``resume`` and ``limit`` change.

A setting is resolved to a function once, when the function is first seen (with the
same matcher as ``--retry`` and ``--max-queue``, :mod:`._patterns`), or when an admin
changes it; the dispatcher then reads one attribute per job start (``Function.flow``),
so functions without limits pay nothing. The state a limit needs while jobs run (the
token bucket, the pause flag) is :class:`~gearshift.broker._model.FlowControl`.

Admin changes are kept per exact function name as a :class:`FlowSetting` whose unset
fields inherit the startup rules, and persisted as its text form
(``concurrency=2 rate=5/s paused weight=3``), so every store keeps one short string per
function and no backend has to know the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gearshift.broker._model import FlowControl
from gearshift.broker._patterns import FunctionPatterns

#: Largest concurrency limit, rate count and weight accepted (bounds bad input; far
#: above any real limit).
MAX_FLOW_VALUE = 1_000_000

_PERIODS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_PERIOD_NAMES = {1.0: "s", 60.0: "m", 3600.0: "h"}


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` job starts per ``period`` seconds; the bucket holds ``count`` tokens
    (the burst). ``count == 0`` is "no rate limit" (an admin override of a rule)."""

    count: int
    period: float

    @property
    def text(self) -> str:
        return "none" if not self.count else f"{self.count}/{_PERIOD_NAMES[self.period]}"


def _whole(value: str, what: str, spec: str, low: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"{spec!r}: {what} {value.strip()!r} is not a whole number") \
            from None
    if not low <= number <= MAX_FLOW_VALUE:
        raise ValueError(f"{spec!r}: {what} {number} is outside {low}..{MAX_FLOW_VALUE}")
    return number


def parse_rate_value(value: str, spec: str) -> Rate:
    """``5/s``, ``100/m``, ``1000/h`` (also ``/sec``, ``/min``, ``/hour``) -> Rate."""
    count, sep, unit = value.strip().partition("/")
    period = _PERIODS.get(unit.strip().lower())
    if not sep or period is None:
        raise ValueError(f"{spec!r}: rate {value.strip()!r} must be N/s, N/m or N/h")
    return Rate(_whole(count, "rate", spec, 1), period)


@dataclass(frozen=True, slots=True)
class ConcurrencyRule:
    pattern: str
    limit: int


@dataclass(frozen=True, slots=True)
class RateRule:
    pattern: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class WeightRule:
    pattern: str
    weight: int


def _split(spec: str, option: str, example: str) -> tuple[str, str]:
    pattern, sep, value = spec.partition("=")
    pattern = pattern.strip()
    if not sep or not pattern or not value.strip():
        raise ValueError(f"{option} {spec!r}: expected FUNC={example}")
    return pattern, value


def parse_concurrency(spec: str) -> ConcurrencyRule:
    """``mail=10`` -> at most 10 jobs of ``mail`` running at once (0 = paused).

    Raises:
        ValueError: naming the offending text.
    """
    pattern, value = _split(spec, "--concurrency", "N, e.g. 'mail=10' or 'report.*=1'")
    return ConcurrencyRule(pattern, _whole(value, "limit", f"--concurrency {spec}", 0))


def parse_rate(spec: str) -> RateRule:
    """``payments=5/s`` -> at most 5 job starts a second (bursts of up to 5)."""
    pattern, value = _split(spec, "--rate", "N/s|N/m|N/h, e.g. 'payments=5/s'")
    return RateRule(pattern, parse_rate_value(value, f"--rate {spec}"))


def parse_weight(spec: str) -> WeightRule:
    """``bulk=1`` / ``urgent=4``: a function's share among a worker's functions."""
    pattern, value = _split(spec, "--weight", "W, e.g. 'reports=3'")
    return WeightRule(pattern, _whole(value, "weight", f"--weight {spec}", 1))


@dataclass(frozen=True, slots=True)
class FlowSetting:
    """Flow settings of one function. As an admin override, None fields inherit the
    startup rules; ``concurrency == -1`` and ``Rate(0, 1.0)`` lift a rule's limit."""

    concurrency: int | None = None
    rate: Rate | None = None
    paused: bool = False
    weight: int | None = None
    #: admin ``maxqueue`` (per priority), kept here so that it is persisted with the
    #: rest of the function's settings; not a flow limit (see ``limited``)
    max_queue: tuple[int, int, int] | None = None

    @property
    def empty(self) -> bool:
        return self == FlowSetting()

    @property
    def limited(self) -> bool:
        """Whether this (effective) setting restricts or weighs anything."""
        return (self.paused or (self.concurrency is not None and self.concurrency >= 0)
                or (self.rate is not None and self.rate.count > 0)
                or (self.weight is not None and self.weight != 1))

    def over(self, base: FlowSetting) -> FlowSetting:
        """This override applied on top of ``base`` (the startup rules)."""
        return FlowSetting(
            base.concurrency if self.concurrency is None else self.concurrency,
            base.rate if self.rate is None else self.rate,
            base.paused or self.paused,
            base.weight if self.weight is None else self.weight,
            base.max_queue if self.max_queue is None else self.max_queue)

    @property
    def text(self) -> str:
        """The stored and displayed form: ``concurrency=2 rate=5/s paused weight=3``."""
        words = []
        if self.concurrency is not None:
            words.append("concurrency=" + ("none" if self.concurrency < 0
                                           else str(self.concurrency)))
        if self.rate is not None:
            words.append("rate=" + self.rate.text)
        if self.paused:
            words.append("paused")
        if self.weight is not None:
            words.append(f"weight={self.weight}")
        if self.max_queue is not None:
            words.append("maxqueue=" + ",".join(map(str, self.max_queue)))
        return " ".join(words)

    def updated(self, words: list[str]) -> FlowSetting:
        """This setting with ``words`` (``concurrency=N|none|-``, ``rate=N/s|none|-``,
        ``weight=W|-``, ``paused``, ``resumed``) applied; ``-`` means "inherit".

        Raises:
            ValueError: naming the offending word.
        """
        setting = self
        for word in words:
            name, sep, value = word.partition("=")
            name, value = name.strip().lower(), value.strip()
            if not sep and name in ("paused", "resumed"):
                setting = replace(setting, paused=name == "paused")
            elif sep and name == "concurrency":
                setting = replace(setting, concurrency=None if value == "-" else
                                  -1 if value.lower() == "none" else
                                  _whole(value, "concurrency", word, 0))
            elif sep and name == "rate":
                setting = replace(setting, rate=None if value == "-" else
                                  Rate(0, 1.0) if value.lower() == "none" else
                                  parse_rate_value(value, word))
            elif sep and name == "weight":
                setting = replace(setting, weight=None if value == "-" else
                                  _whole(value, "weight", word, 1))
            elif sep and name == "maxqueue":
                setting = replace(setting, max_queue=None if value == "-" else
                                  _queue_limits(value, word))
            else:
                raise ValueError(f"{word!r}: expected concurrency=N|none, rate=N/s|none, "
                                 "weight=W, or paused (- to inherit the startup rule)")
        return setting

    @classmethod
    def parse(cls, text: str) -> FlowSetting:
        """The setting a :attr:`text` describes (stored overrides)."""
        return cls().updated(text.split())


def _queue_limits(value: str, word: str) -> tuple[int, int, int]:
    """``maxqueue=H,N,L`` as stored (one number: all three priorities)."""
    parts = value.split(",")
    if len(parts) not in (1, 3):
        raise ValueError(f"{word!r}: expected maxqueue=N or maxqueue=HIGH,NORMAL,LOW")
    numbers = [_whole(part, "maxqueue", word, 0) for part in parts]
    high, normal, low = numbers * 3 if len(numbers) == 1 else numbers
    return high, normal, low


def flow_control(setting: FlowSetting, old: FlowControl | None, now: float) -> FlowControl:
    """A limited function's run-time state for its effective ``setting``; a bucket
    keeps its tokens while its rate stays the same (``old``: the state it replaces)."""
    rate = setting.rate
    count, period = (rate.count, rate.period) if rate is not None else (0, 1.0)
    concurrency = setting.concurrency if setting.concurrency is not None else -1
    flow = FlowControl(concurrency, setting.paused, count, period, setting.weight or 1, now)
    if old is not None and old.per_second == flow.per_second and old.burst == flow.burst:
        flow.tokens, flow.stamp = old.tokens, old.stamp
    return flow


class FlowRules:
    """The startup rules (``--concurrency``, ``--rate``, ``--weight``), matched per
    function name as ``--retry`` is."""

    def __init__(self, concurrency: list[ConcurrencyRule] | None = None,
                 rates: list[RateRule] | None = None,
                 weights: list[WeightRule] | None = None) -> None:
        self.concurrency = FunctionPatterns(concurrency)
        self.rates = FunctionPatterns(rates)
        self.weights = FunctionPatterns(weights)

    def for_function(self, name: bytes) -> FlowSetting:
        """The startup setting for ``name`` (all None when no rule matches)."""
        if not self:
            return FlowSetting()
        limit = self.concurrency.match(name)
        rate = self.rates.match(name)
        weight = self.weights.match(name)
        return FlowSetting(None if limit is None else limit.limit,
                           None if rate is None else rate.rate, False,
                           None if weight is None else weight.weight)

    def __bool__(self) -> bool:
        return bool(self.concurrency or self.rates or self.weights)
