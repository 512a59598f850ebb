"""Settings given per function name on the command line (``--retry``, ``--max-queue``):
``FUNC`` may be an exact name or a glob. One matcher for all of them, so every such flag
resolves alike: an exact name beats a glob, and globs are tried in the order given
(``--retry 'img.*=5' --retry '*=3'`` gives img.* five attempts). Resolved once per
function, when it is first seen, so the dispatcher pays nothing per job."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar


class Named(Protocol):
    @property
    def pattern(self) -> str: ...


T = TypeVar("T", bound=Named)


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


class FunctionPatterns(Generic[T]):
    """Rules with a ``pattern`` each; :meth:`match` finds the one for a function name."""

    def __init__(self, rules: Sequence[T] | None = None) -> None:
        self.rules = list(rules or ())
        self._exact = {r.pattern: r for r in self.rules if not is_glob(r.pattern)}
        self._globs = [r for r in self.rules if is_glob(r.pattern)]

    def match(self, name: bytes) -> T | None:
        """The rule for function ``name``, or None."""
        if not self.rules:
            return None
        text = name.decode("utf-8", "surrogateescape")
        exact = self._exact.get(text)
        if exact is not None:
            return exact
        for rule in self._globs:
            if fnmatch.fnmatchcase(text, rule.pattern):
                return rule
        return None

    def __bool__(self) -> bool:
        return bool(self.rules)
