"""The supervisor's decisions as plain calls: what an exit means, when to replace."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gearshift.client._supervision import CrashBackoff, Exit, ExitReason, replacement_delay


def make_exit(reason: ExitReason, code: int | None = 0, retiring: bool = False) -> Exit:
    return Exit(pid=100, exitcode=code, reason=reason, retiring=retiring)


def test_first_crash_is_replaced_at_once_then_backoff_doubles() -> None:
    backoff = CrashBackoff(base=0.5, maximum=4.0, healthy_after=10.0)
    assert [backoff.delay(lived=0.1) for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_a_child_that_lived_long_resets_the_backoff() -> None:
    backoff = CrashBackoff(base=0.5, maximum=4.0, healthy_after=10.0)
    for _ in range(4):
        backoff.delay(lived=0.1)
    assert backoff.delay(lived=60.0) == 0.0
    assert backoff.delay(lived=0.1) == 0.5


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=1, max_size=50))
def test_backoff_stays_within_bounds(lives: list[float]) -> None:
    backoff = CrashBackoff(base=0.25, maximum=8.0, healthy_after=5.0)
    assert all(0.0 <= backoff.delay(lived) <= 8.0 for lived in lives)


@pytest.mark.parametrize(("exit", "draining", "expected"), [
    (make_exit(ExitReason.CRASHED, code=-9), False, 0.0),
    (make_exit(ExitReason.STOPPED, code=1), False, 0.0),  # non-zero status: a crash
    (make_exit(ExitReason.RECYCLED_JOBS), False, 0.0),
    (make_exit(ExitReason.RECYCLED_MEMORY), False, 0.0),
    (make_exit(ExitReason.STOPPED, retiring=True), False, 0.0),
    (make_exit(ExitReason.STOPPED), False, 0.0),  # someone signalled the child itself
    (make_exit(ExitReason.FINISHED), False, None),  # -c reached: not replaced
    (make_exit(ExitReason.CRASHED, code=-9), True, None),  # draining replaces nothing
    (make_exit(ExitReason.STOPPED, retiring=True), True, None),
])
def test_replacement_decisions(exit: Exit, draining: bool, expected: float | None) -> None:
    assert replacement_delay(exit, draining, lived=1.0, backoff=CrashBackoff()) == expected


def test_exit_descriptions_name_the_cause() -> None:
    assert make_exit(ExitReason.CRASHED, code=-9).describe() == \
        "crashed (killed by signal 9)"
    assert make_exit(ExitReason.STOPPED, code=3).describe() == "crashed (exit status 3)"
    assert make_exit(ExitReason.RECYCLED_MEMORY).describe() == \
        "recycled over max-memory-per-child"


def test_bad_backoff_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="base"):
        CrashBackoff(base=0)
