"""JobQueue: the per-priority FIFO of a function, a list with a moving head."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gearshift.broker import Function, Job
from gearshift.broker._model import JobQueue


def new_jobs(n: int) -> list[Job]:
    func = Function(b"f")
    return [Job(func, b"", b"%d" % i, 1, True) for i in range(n)]


def test_first_in_first_out() -> None:
    queue = JobQueue()
    jobs = new_jobs(3)
    for job in jobs:
        queue.append(job)
    assert len(queue) == 3
    assert [queue.popleft() for _ in range(3)] == jobs
    assert len(queue) == 0


def test_popleft_on_an_empty_queue_raises_index_error() -> None:
    queue = JobQueue()
    with pytest.raises(IndexError):
        queue.popleft()
    queue.append(new_jobs(1)[0])
    queue.popleft()
    with pytest.raises(IndexError):
        queue.popleft()


def test_iteration_and_clear_see_only_what_is_left() -> None:
    queue = JobQueue()
    jobs = new_jobs(4)
    for job in jobs:
        queue.append(job)
    queue.popleft()
    assert list(queue) == jobs[1:]
    queue.clear()
    assert len(queue) == 0
    assert list(queue) == []


def test_a_taken_job_is_not_kept_alive_by_the_queue() -> None:
    queue = JobQueue()
    jobs = new_jobs(3)
    for job in jobs:
        queue.append(job)
    taken = queue.popleft()
    assert taken is jobs[0]
    # (Job has no __weakref__ slot, so look for references in the queue's storage.)
    assert all(item is not taken for item in queue.items)
    assert len(queue) == 2


def test_a_long_lived_queue_does_not_grow_without_bound() -> None:
    # A queue that never empties (one in, one out) must still cut its taken prefix.
    queue = JobQueue()
    jobs = new_jobs(10)
    queue.append(jobs[0])
    for i in range(20_000):
        queue.append(jobs[(i + 1) % 10])
        queue.popleft()
    assert len(queue) == 1
    assert len(queue.items) < 2_100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just("pop"), st.just("clear"), st.integers(0, 9)), max_size=3000))
def test_behaves_like_a_deque(operations: list[object]) -> None:
    jobs = new_jobs(10)
    queue, model = JobQueue(), deque[Job]()
    for op in operations:
        if op == "pop":
            if model:
                assert queue.popleft() is model.popleft()
            else:
                with pytest.raises(IndexError):
                    queue.popleft()
        elif op == "clear":
            queue.clear()
            model.clear()
        else:
            assert isinstance(op, int)
            queue.append(jobs[op])
            model.append(jobs[op])
        assert len(queue) == len(model)
    assert list(queue) == list(model)
