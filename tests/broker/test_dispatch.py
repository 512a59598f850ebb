"""Dispatch rules from issue 2, each checked with plain calls on a socket-free Broker."""

from __future__ import annotations

import pytest

from gearshift.broker import Broker, Peer
from gearshift.protocol import ErrorCode

from ._harness import Clock, P, admin, grab, grab_handle, make_broker, submit, take, worker


@pytest.fixture
def broker() -> Broker:
    return make_broker()


# ---------------------------------------------------------------- coalescing


def test_same_function_and_unique_coalesce_and_both_clients_get_the_result(
        broker: Broker) -> None:
    c1, c2 = broker.connect(), broker.connect()
    h1 = submit(broker, c1, b"f", b"a", unique=b"k")
    h2 = submit(broker, c2, b"f", b"other payload", unique=b"k")
    assert h1 == h2
    w = worker(broker, b"f")
    assert grab(broker, w) == (P.JOB_ASSIGN, [h1, b"f", b"a"])
    assert grab(broker, w) == (P.NO_JOB, [])  # one job, not two
    broker.handle(w, P.WORK_COMPLETE, h1, b"r")
    assert take(c1) == [(P.WORK_COMPLETE, [h1, b"r"])]
    assert take(c2) == [(P.WORK_COMPLETE, [h1, b"r"])]


def test_same_unique_on_another_function_does_not_coalesce(broker: Broker) -> None:
    c = broker.connect()
    assert submit(broker, c, b"f", unique=b"k") != submit(broker, c, b"g", unique=b"k")


def test_dash_unique_coalesces_identical_payloads_only(broker: Broker) -> None:
    c = broker.connect()
    a1 = submit(broker, c, b"f", b"same", unique=b"-")
    a2 = submit(broker, c, b"f", b"same", unique=b"-")
    b1 = submit(broker, c, b"f", b"different", unique=b"-")
    assert a1 == a2
    assert b1 != a1


def test_empty_unique_never_coalesces(broker: Broker) -> None:
    c = broker.connect()
    handles = {submit(broker, c, b"f", b"same") for _ in range(3)}
    assert len(handles) == 3


def test_coalescing_onto_a_running_job_attaches_the_new_client(broker: Broker) -> None:
    c1, c2 = broker.connect(), broker.connect()
    h = submit(broker, c1, b"f", unique=b"k")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    assert submit(broker, c2, b"f", unique=b"k") == h
    broker.handle(w, P.WORK_STATUS, h, b"1", b"2")
    broker.handle(w, P.WORK_COMPLETE, h, b"r")
    assert take(c2) == [(P.WORK_STATUS, [h, b"1", b"2"]), (P.WORK_COMPLETE, [h, b"r"])]


def test_background_duplicate_attaches_nothing(broker: Broker) -> None:
    fg, bg = broker.connect(), broker.connect()
    h = submit(broker, fg, b"f", unique=b"k")
    assert submit(broker, bg, b"f", unique=b"k", ptype=P.SUBMIT_JOB_BG) == h
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_COMPLETE, h, b"r")
    assert take(fg) == [(P.WORK_COMPLETE, [h, b"r"])]
    assert take(bg) == []


def test_unique_is_free_again_after_the_job_finishes(broker: Broker) -> None:
    c = broker.connect()
    h1 = submit(broker, c, b"f", unique=b"k")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_COMPLETE, h1, b"")
    take(c)
    assert submit(broker, c, b"f", unique=b"k") != h1


def test_unique_longer_than_64_bytes_is_rejected(broker: Broker) -> None:
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB, b"f", b"u" * 65, b"x")
    [(ptype, fields)] = take(c)
    assert (ptype, fields[0]) == (P.ERROR, ErrorCode.ARGUMENT_TOO_LARGE)
    assert submit(broker, c, b"f", unique=b"u" * 64)


# ---------------------------------------------------------------- priority, FIFO, round robin


def test_global_priority_across_functions(broker: Broker) -> None:
    c = broker.connect()
    low = submit(broker, c, b"a", ptype=P.SUBMIT_JOB_LOW)
    normal = submit(broker, c, b"b", ptype=P.SUBMIT_JOB)
    high = submit(broker, c, b"c", ptype=P.SUBMIT_JOB_HIGH_BG)
    w = worker(broker, b"a", b"b", b"c")
    assert [grab_handle(broker, w) for _ in range(3)] == [high, normal, low]


def test_high_on_one_function_beats_older_normal_on_another(broker: Broker) -> None:
    c = broker.connect()
    normals = [submit(broker, c, b"a") for _ in range(3)]
    high = submit(broker, c, b"b", ptype=P.SUBMIT_JOB_HIGH)
    w = worker(broker, b"a", b"b")
    assert grab_handle(broker, w) == high
    assert [grab_handle(broker, w) for _ in range(3)] == normals


def test_fifo_within_a_priority(broker: Broker) -> None:
    c = broker.connect()
    handles = [submit(broker, c, b"f", str(i).encode()) for i in range(5)]
    w = worker(broker, b"f")
    assert [grab_handle(broker, w) for _ in range(5)] == handles


def test_round_robin_across_a_workers_functions(broker: Broker) -> None:
    c = broker.connect()
    a = [submit(broker, c, b"a", b"a%d" % i) for i in range(3)]
    b = [submit(broker, c, b"b", b"b%d" % i) for i in range(3)]
    w = worker(broker, b"a", b"b")
    got = [grab_handle(broker, w) for _ in range(6)]
    assert got == [a[0], b[0], a[1], b[1], a[2], b[2]]


def test_round_robin_when_the_worker_has_more_functions_than_are_ready(broker: Broker) -> None:
    # Six functions registered, two with jobs: _take scans the ready functions instead of
    # the worker's, and must still alternate rather than drain the first one.
    c = broker.connect()
    a = [submit(broker, c, b"a", b"a%d" % i) for i in range(3)]
    b = [submit(broker, c, b"b", b"b%d" % i) for i in range(3)]
    w = worker(broker, b"a", b"b", b"c", b"d", b"e", b"f")
    got = [grab_handle(broker, w) for _ in range(6)]
    assert got == [a[0], b[0], a[1], b[1], a[2], b[2]]
    assert grab(broker, w) == (P.NO_JOB, [])


def test_round_robin_when_other_ready_functions_come_first(broker: Broker) -> None:
    # Five ready functions the worker cannot do sit ahead of its two in the ready order:
    # the scan of ready stops after two entries and falls back to the worker's own
    # functions, which must still alternate rather than drain the first one.
    c = broker.connect()
    for i in range(5):
        submit(broker, c, b"x%d" % i)
    a = [submit(broker, c, b"a", b"a%d" % i) for i in range(3)]
    b = [submit(broker, c, b"b", b"b%d" % i) for i in range(3)]
    w = worker(broker, b"a", b"b")
    got = [grab_handle(broker, w) for _ in range(6)]
    assert got == [a[0], b[0], a[1], b[1], a[2], b[2]]
    assert grab(broker, w) == (P.NO_JOB, [])
    # ... and the other functions' jobs are still there for a worker that does them.
    other = worker(broker, *(b"x%d" % i for i in range(5)))
    assert len({grab_handle(broker, other) for _ in range(5)}) == 5


def test_ready_order_rotates_between_workers_sharing_functions(broker: Broker) -> None:
    # Two workers that do the same two functions: a function served by one worker goes
    # to the back, so the other is offered the other function next.
    c = broker.connect()
    a = [submit(broker, c, b"a", b"a%d" % i) for i in range(2)]
    b = [submit(broker, c, b"b", b"b%d" % i) for i in range(2)]
    w1, w2 = worker(broker, b"a", b"b"), worker(broker, b"b", b"a")
    got = [grab_handle(broker, w) for w in (w1, w2, w1, w2)]
    assert got == [a[0], b[0], a[1], b[1]]


def test_round_robin_spans_priorities(broker: Broker) -> None:
    # The function just served goes behind the others at every priority: after a's HIGH
    # job, b's NORMAL job comes before a's (gearmand 2.0; the differential scenario
    # priority_two_functions pins the same order against the real gearmand's).
    c = broker.connect()
    a_high = submit(broker, c, b"a", b"a-high", ptype=P.SUBMIT_JOB_HIGH_BG)
    a_normal = submit(broker, c, b"a", b"a-normal", ptype=P.SUBMIT_JOB_BG)
    b_low = submit(broker, c, b"b", b"b-low", ptype=P.SUBMIT_JOB_LOW_BG)
    b_normal = submit(broker, c, b"b", b"b-normal", ptype=P.SUBMIT_JOB_BG)
    w = worker(broker, b"a", b"b")
    got = [grab_handle(broker, w) for _ in range(4)]
    assert got == [a_high, b_normal, a_normal, b_low]


def test_worker_only_gets_its_own_functions(broker: Broker) -> None:
    c = broker.connect()
    submit(broker, c, b"other")
    w = worker(broker, b"f")
    assert grab(broker, w) == (P.NO_JOB, [])


def test_grab_job_uniq_and_all_carry_unique_and_reducer(broker: Broker) -> None:
    c = broker.connect()
    h1 = submit(broker, c, b"f", b"d1", unique=b"u1")
    broker.handle(c, P.SUBMIT_REDUCE_JOB, b"f", b"u2", b"red", b"", b"d2")
    [(_, [h2])] = take(c)
    w = worker(broker, b"f")
    broker.handle(w, P.GRAB_JOB_UNIQ)
    assert take(w) == [(P.JOB_ASSIGN_UNIQ, [h1, b"f", b"u1", b"d1"])]
    broker.handle(w, P.GRAB_JOB_ALL)
    assert take(w) == [(P.JOB_ASSIGN_ALL, [h2, b"f", b"u2", b"red", b"d2"])]
    broker.handle(w, P.GRAB_JOB_ALL)
    assert take(w) == [(P.NO_JOB, [])]


# ---------------------------------------------------------------- NOOP / PRE_SLEEP


def test_no_noop_without_pre_sleep(broker: Broker) -> None:
    w = worker(broker, b"f")
    submit(broker, broker.connect(), b"f")
    assert take(w) == []


def test_noop_once_per_sleep(broker: Broker) -> None:
    c = broker.connect()
    w = worker(broker, b"f")
    broker.handle(w, P.PRE_SLEEP)
    assert take(w) == []
    submit(broker, c, b"f")
    submit(broker, c, b"f")
    assert take(w) == [(P.NOOP, [])]  # two jobs, still one NOOP
    grab_handle(broker, w)
    broker.handle(w, P.PRE_SLEEP)  # a job is still queued: woken at once
    assert take(w) == [(P.NOOP, [])]
    grab_handle(broker, w)
    broker.handle(w, P.PRE_SLEEP)
    assert take(w) == []
    submit(broker, c, b"f")
    assert take(w) == [(P.NOOP, [])]  # a new sleep earns a new NOOP


def test_pre_sleep_with_a_job_already_queued_gets_an_immediate_noop(broker: Broker) -> None:
    submit(broker, broker.connect(), b"f")
    w = worker(broker, b"f")
    broker.handle(w, P.PRE_SLEEP)
    assert take(w) == [(P.NOOP, [])]


def test_noop_only_for_the_functions_a_worker_can_do(broker: Broker) -> None:
    w = worker(broker, b"f")
    broker.handle(w, P.PRE_SLEEP)
    submit(broker, broker.connect(), b"g")
    assert take(w) == []


@pytest.mark.parametrize(("wakeup", "expected"), [(1, 1), (2, 2), (0, 4)])
def test_worker_wakeup_caps_noops_per_job(wakeup: int, expected: int) -> None:
    broker = make_broker(worker_wakeup=wakeup)
    sleepers = [worker(broker, b"f") for _ in range(4)]
    for w in sleepers:
        broker.handle(w, P.PRE_SLEEP)
    submit(broker, broker.connect(), b"f")
    woken = [w for w in sleepers if take(w) == [(P.NOOP, [])]]
    assert len(woken) == expected


def _sleepers_and_jobs(broker: Broker, sleepers: int, jobs: int) -> list[Peer]:
    """``sleepers`` workers of f sleep, then ``jobs`` jobs for f are submitted."""
    peers = [worker(broker, b"f") for _ in range(sleepers)]
    for w in peers:
        broker.handle(w, P.PRE_SLEEP)
    c = broker.connect()
    for _ in range(jobs):
        submit(broker, c, b"f")
    return peers


def test_successive_jobs_wake_different_sleepers() -> None:
    sleepers = _sleepers_and_jobs(make_broker(worker_wakeup=1), 3, 3)
    assert [take(w) for w in sleepers] == [[(P.NOOP, [])]] * 3


def test_woken_worker_that_disconnects_passes_the_wakeup_on() -> None:
    broker = make_broker(worker_wakeup=1)
    w1, w2 = worker(broker, b"f"), worker(broker, b"f")
    broker.handle(w1, P.PRE_SLEEP)
    broker.handle(w2, P.PRE_SLEEP)
    submit(broker, broker.connect(), b"f")
    assert take(w1) == [(P.NOOP, [])]
    broker.disconnect(w1)
    assert take(w2) == [(P.NOOP, [])]


@pytest.mark.parametrize("how", [P.CANT_DO, P.RESET_ABILITIES])
def test_woken_worker_that_drops_the_function_passes_the_wakeup_on(how: int) -> None:
    """Found by WakeOneMachine: w1 is NOOPed for an f job, then stops doing f. It stays
    connected (it still does g), so only passing the wake-up on gets the job to w2."""
    broker = make_broker(worker_wakeup=1)
    w1, w2 = worker(broker, b"f", b"g"), worker(broker, b"f")
    broker.handle(w1, P.PRE_SLEEP)
    broker.handle(w2, P.PRE_SLEEP)
    submit(broker, broker.connect(), b"f")
    assert take(w1) == [(P.NOOP, [])]
    assert take(w2) == []
    if how == P.CANT_DO:
        broker.handle(w1, P.CANT_DO, b"f")
    else:
        broker.handle(w1, P.RESET_ABILITIES)
    assert take(w2) == [(P.NOOP, [])]


def _stale_and_live_sleeper(clock: Clock, **config: object) -> tuple[Broker, Peer, Peer]:
    """w1 sleeps first and will never act on its NOOP (like a Perl test worker whose
    process died while its parent keeps the socket open); w2 sleeps too. One job."""
    broker = make_broker(clock, worker_wakeup=1, **config)
    w1, w2 = worker(broker, b"f"), worker(broker, b"f")
    broker.handle(w1, P.PRE_SLEEP)
    broker.handle(w2, P.PRE_SLEEP)
    submit(broker, broker.connect(), b"f")
    assert take(w1) == [(P.NOOP, [])]
    assert take(w2) == []
    return broker, w1, w2


def test_a_woken_worker_that_never_comes_gets_the_others_woken_after_the_timeout() -> None:
    clock = Clock()
    broker, _, w2 = _stale_and_live_sleeper(clock, wakeup_timeout=1.0)
    clock.advance(0.9)
    broker.run_timers()
    assert take(w2) == []
    clock.advance(0.2)
    broker.run_timers()
    assert take(w2) == [(P.NOOP, [])]
    broker.handle(w2, P.GRAB_JOB)
    assert take(w2)[0][0] == P.JOB_ASSIGN


def test_no_extra_wakeup_when_the_woken_worker_took_the_job() -> None:
    clock = Clock()
    broker, w1, w2 = _stale_and_live_sleeper(clock, wakeup_timeout=1.0)
    broker.handle(w1, P.GRAB_JOB)
    assert take(w1)[0][0] == P.JOB_ASSIGN
    clock.advance(5.0)
    broker.run_timers()
    assert take(w2) == []
    assert broker.timers == []


def test_wakeup_timeout_zero_keeps_strict_wake_one() -> None:
    clock = Clock()
    broker, _, w2 = _stale_and_live_sleeper(clock, wakeup_timeout=0.0)
    assert broker.timers == []
    clock.advance(60.0)
    broker.run_timers()
    assert take(w2) == []


def test_one_wake_check_per_function_whatever_the_job_rate() -> None:
    broker = make_broker(Clock(), worker_wakeup=1, wakeup_timeout=1.0)
    sleepers = _sleepers_and_jobs(broker, 60, 50)
    assert sum(take(w) == [(P.NOOP, [])] for w in sleepers) == 50
    assert len(broker.timers) == 1


# ---------------------------------------------------------------- requeue


@pytest.mark.parametrize("how", ["disconnect", "cant_do", "reset_abilities"])
def test_worker_losing_a_job_puts_it_back(broker: Broker, how: str) -> None:
    c = broker.connect()
    h = submit(broker, c, b"f", b"payload")
    w1 = worker(broker, b"f")
    assert grab_handle(broker, w1) == h
    if how == "disconnect":
        broker.disconnect(w1)
    elif how == "cant_do":
        broker.handle(w1, P.CANT_DO, b"f")
    else:
        broker.handle(w1, P.RESET_ABILITIES)
    w2 = worker(broker, b"f")
    assert grab(broker, w2) == (P.JOB_ASSIGN, [h, b"f", b"payload"])
    broker.handle(w2, P.WORK_COMPLETE, h, b"ok")
    assert take(c) == [(P.WORK_COMPLETE, [h, b"ok"])]
    if how != "disconnect":  # the old holder can no longer report on it
        broker.handle(w1, P.WORK_COMPLETE, h, b"late")
        [(ptype, fields)] = take(w1)
        assert (ptype, fields[0]) == (P.ERROR, ErrorCode.JOB_NOT_FOUND)


def test_cant_do_of_another_function_keeps_the_job(broker: Broker) -> None:
    c = broker.connect()
    h = submit(broker, c, b"f")
    w = worker(broker, b"f", b"g")
    grab_handle(broker, w)
    broker.handle(w, P.CANT_DO, b"g")
    broker.handle(w, P.WORK_COMPLETE, h, b"ok")
    assert take(c) == [(P.WORK_COMPLETE, [h, b"ok"])]


def test_requeued_job_keeps_its_priority_place(broker: Broker) -> None:
    c = broker.connect()
    high = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_HIGH)
    normal = submit(broker, c, b"f")
    w1 = worker(broker, b"f")
    assert grab_handle(broker, w1) == high
    broker.disconnect(w1)
    w2 = worker(broker, b"f")
    assert [grab_handle(broker, w2) for _ in range(2)] == [high, normal]


# ---------------------------------------------------------------- CAN_DO_TIMEOUT, retries


def test_can_do_timeout_requeues_an_overrunning_job() -> None:
    clock = Clock()
    broker = make_broker(clock)
    c = broker.connect()
    h = submit(broker, c, b"f")
    w1 = broker.connect()
    broker.handle(w1, P.CAN_DO_TIMEOUT, b"f", b"2000")
    assert grab_handle(broker, w1) == h
    assert broker.next_deadline() == pytest.approx(clock.now + 2.0)
    clock.advance(1.9)
    broker.run_timers()
    broker.handle(c, P.GET_STATUS, h)
    assert take(c) == [(P.STATUS_RES, [h, b"1", b"1", b"0", b"0"])]
    clock.advance(0.2)
    broker.run_timers()
    broker.handle(c, P.GET_STATUS, h)
    assert take(c) == [(P.STATUS_RES, [h, b"1", b"0", b"0", b"0"])]  # queued again
    w2 = worker(broker, b"f")
    assert grab_handle(broker, w2) == h


def test_can_do_timeout_below_one_second_is_raised_to_one_second() -> None:
    clock = Clock()
    broker = make_broker(clock)
    submit(broker, broker.connect(), b"f")
    w = broker.connect()
    broker.handle(w, P.CAN_DO_TIMEOUT, b"f", b"10")
    grab_handle(broker, w)
    assert broker.next_deadline() == pytest.approx(clock.now + 1.0)


def test_timeout_of_a_finished_job_does_nothing() -> None:
    clock = Clock()
    broker = make_broker(clock)
    c = broker.connect()
    h = submit(broker, c, b"f")
    w = broker.connect()
    broker.handle(w, P.CAN_DO_TIMEOUT, b"f", b"1000")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_COMPLETE, h, b"r")
    take(c)
    clock.advance(5)
    broker.run_timers()
    assert take(c) == []
    assert dict(broker.jobs.items()) == {}


def test_can_do_timeout_with_a_non_numeric_value_registers_without_timeout(
        broker: Broker) -> None:
    # As gearmand (atoi): npm's gearman sends the timeout as 4 binary bytes.
    w = broker.connect()
    broker.handle(w, P.CAN_DO_TIMEOUT, b"f", b"\x00\x00\x00\x05")
    assert take(w) == []
    assert [f.name for f in w.functions] == [b"f"]
    assert not w.timeouts


def test_job_retries_drops_the_job_and_fails_its_clients() -> None:
    broker = make_broker(job_retries=2)
    c = broker.connect()
    h = submit(broker, c, b"f")
    for attempt in range(2):
        w = worker(broker, b"f")
        assert grab_handle(broker, w) == h, attempt
        broker.disconnect(w)
    assert take(c) == [(P.WORK_FAIL, [h])]
    assert h not in broker.jobs
    assert grab(broker, worker(broker, b"f")) == (P.NO_JOB, [])


def test_job_retries_zero_means_unlimited() -> None:
    broker = make_broker(job_retries=0)
    c = broker.connect()
    h = submit(broker, c, b"f")
    for _ in range(10):
        w = worker(broker, b"f")
        assert grab_handle(broker, w) == h
        broker.disconnect(w)
    assert take(c) == []


# ---------------------------------------------------------------- epoch jobs


def test_epoch_job_is_released_by_the_timer_at_its_time() -> None:
    clock = Clock()
    broker = make_broker(clock)
    c = broker.connect()
    when = int(clock.now) + 60
    broker.handle(c, P.SUBMIT_JOB_EPOCH, b"f", b"", str(when).encode(), b"later")
    [(ptype, [h])] = take(c)
    assert ptype == P.JOB_CREATED
    w = worker(broker, b"f")
    assert grab(broker, w) == (P.NO_JOB, [])
    broker.handle(w, P.PRE_SLEEP)
    assert broker.next_deadline() == when
    clock.advance(59)
    broker.run_timers()
    assert take(w) == []
    clock.advance(1)
    broker.run_timers()  # no other traffic: the timer alone releases it
    assert take(w) == [(P.NOOP, [])]
    assert grab(broker, w) == (P.JOB_ASSIGN, [h, b"f", b"later"])


def test_epoch_in_the_past_runs_at_once(broker: Broker) -> None:
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_EPOCH, b"f", b"", b"1000", b"d")
    [(_, [h])] = take(c)
    assert grab_handle(broker, worker(broker, b"f")) == h


def test_epoch_with_a_non_numeric_time_is_an_error(broker: Broker) -> None:
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_EPOCH, b"f", b"", b"tomorrow", b"d")
    [(ptype, fields)] = take(c)
    assert (ptype, fields[0]) == (P.ERROR, ErrorCode.INVALID_ARGUMENT)
    assert dict(broker.jobs.items()) == {}


# ---------------------------------------------------------------- abandoned jobs


def test_foreground_job_whose_client_left_is_not_run(broker: Broker) -> None:
    c = broker.connect()
    submit(broker, c, b"f", unique=b"k")
    broker.disconnect(c)
    assert grab(broker, worker(broker, b"f")) == (P.NO_JOB, [])
    assert dict(broker.jobs.items()) == {}
    assert broker.functions[b"f"].total == 0


def test_client_that_submitted_the_same_unique_twice_then_left_abandons_it(
        broker: Broker) -> None:
    # Regression: the client was attached once per submission and disconnect removed only
    # one entry, so the job stayed "wanted" and ran for nobody.
    c = broker.connect()
    h = submit(broker, c, b"f", unique=b"k")
    assert submit(broker, c, b"f", unique=b"k") == h
    broker.disconnect(c)
    assert dict(broker.jobs.items()) == {}
    assert grab(broker, worker(broker, b"f")) == (P.NO_JOB, [])


def test_client_attached_twice_gets_the_result_twice(broker: Broker) -> None:
    c = broker.connect()
    h = submit(broker, c, b"f", unique=b"k")
    submit(broker, c, b"f", unique=b"k")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_COMPLETE, h, b"r")
    assert take(c) == [(P.WORK_COMPLETE, [h, b"r"])] * 2


def test_foreground_job_runs_while_one_of_its_clients_remains(broker: Broker) -> None:
    c1, c2 = broker.connect(), broker.connect()
    h = submit(broker, c1, b"f", unique=b"k")
    submit(broker, c2, b"f", unique=b"k")
    broker.disconnect(c1)
    assert grab_handle(broker, worker(broker, b"f")) == h


def test_background_job_runs_without_its_client(broker: Broker) -> None:
    c = broker.connect()
    h = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_LOW_BG)
    broker.disconnect(c)
    assert grab_handle(broker, worker(broker, b"f")) == h


def test_abandoned_running_job_is_dropped_on_requeue(broker: Broker) -> None:
    c = broker.connect()
    submit(broker, c, b"f")
    w1 = worker(broker, b"f")
    grab_handle(broker, w1)
    broker.disconnect(c)
    broker.disconnect(w1)
    assert grab(broker, worker(broker, b"f")) == (P.NO_JOB, [])
    assert dict(broker.jobs.items()) == {}


# ---------------------------------------------------------------- status


def test_get_status_through_a_jobs_life(broker: Broker) -> None:
    c = broker.connect()
    broker.handle(c, P.GET_STATUS, b"H:t:nope")
    assert take(c) == [(P.STATUS_RES, [b"H:t:nope", b"0", b"0", b"0", b"0"])]
    h = submit(broker, c, b"f", ptype=P.SUBMIT_JOB_BG)
    broker.handle(c, P.GET_STATUS, h)
    assert take(c) == [(P.STATUS_RES, [h, b"1", b"0", b"0", b"0"])]
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_STATUS, h, b"3", b"10")
    broker.handle(c, P.GET_STATUS, h)
    assert take(c) == [(P.STATUS_RES, [h, b"1", b"1", b"3", b"10"])]
    broker.handle(w, P.WORK_COMPLETE, h, b"")
    broker.handle(c, P.GET_STATUS, h)
    assert take(c) == [(P.STATUS_RES, [h, b"0", b"0", b"0", b"0"])]


def test_get_status_unique(broker: Broker) -> None:
    c1, c2 = broker.connect(), broker.connect()
    broker.handle(c1, P.GET_STATUS_UNIQUE, b"k")
    assert take(c1) == [(P.STATUS_RES_UNIQUE, [b"k", b"0", b"0", b"0", b"0", b"0"])]
    h = submit(broker, c1, b"f", unique=b"k")
    submit(broker, c2, b"f", unique=b"k")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_STATUS, h, b"1", b"4")
    take(c1)
    broker.handle(c1, P.GET_STATUS_UNIQUE, b"k")
    # gearshift counts the attached clients (gearmand always says 0).
    assert take(c1) == [(P.STATUS_RES_UNIQUE, [b"k", b"1", b"1", b"1", b"4", b"2"])]


def test_get_status_unique_ignores_empty_unique(broker: Broker) -> None:
    c = broker.connect()
    submit(broker, c, b"f")
    broker.handle(c, P.GET_STATUS_UNIQUE, b"")
    assert take(c) == [(P.STATUS_RES_UNIQUE, [b"", b"0", b"0", b"0", b"0", b"0"])]


# ---------------------------------------------------------------- work results


def test_work_data_warning_status_reach_every_attached_client(broker: Broker) -> None:
    c1, c2 = broker.connect(), broker.connect()
    h = submit(broker, c1, b"f", unique=b"k")
    submit(broker, c2, b"f", unique=b"k")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_DATA, h, b"d\0d")
    broker.handle(w, P.WORK_WARNING, h, b"w")
    broker.handle(w, P.WORK_STATUS, h, b"1", b"2")
    broker.handle(w, P.WORK_FAIL, h)
    expected = [
        (P.WORK_DATA, [h, b"d\0d"]), (P.WORK_WARNING, [h, b"w"]),
        (P.WORK_STATUS, [h, b"1", b"2"]), (P.WORK_FAIL, [h]),
    ]
    assert take(c1) == expected
    assert take(c2) == expected
    assert dict(broker.jobs.items()) == {}


def test_work_exception_becomes_fail_for_clients_without_the_option(broker: Broker) -> None:
    plain, opted = broker.connect(), broker.connect()
    broker.handle(opted, P.OPTION_REQ, b"exceptions")
    assert take(opted) == [(P.OPTION_RES, [b"exceptions"])]
    h = submit(broker, plain, b"f", unique=b"k")
    submit(broker, opted, b"f", unique=b"k")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_EXCEPTION, h, b"boom")
    # gearmand sends "HANDLE\0"; we send the bare handle, which every client library parses.
    assert take(plain) == [(P.WORK_FAIL, [h])]
    assert take(opted) == [(P.WORK_EXCEPTION, [h, b"boom"])]
    assert dict(broker.jobs.items()) == {}


def test_exceptions_server_option_turns_it_on_for_everyone() -> None:
    broker = make_broker(exceptions=True)
    c = broker.connect()
    h = submit(broker, c, b"f")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    broker.handle(w, P.WORK_EXCEPTION, h, b"boom")
    assert take(c) == [(P.WORK_EXCEPTION, [h, b"boom"])]


def test_unknown_option_is_an_error(broker: Broker) -> None:
    c = broker.connect()
    broker.handle(c, P.OPTION_REQ, b"telepathy")
    [(ptype, fields)] = take(c)
    assert (ptype, fields[0]) == (P.ERROR, ErrorCode.UNKNOWN_OPTION)


@pytest.mark.parametrize("ptype", [P.WORK_COMPLETE, P.WORK_DATA, P.WORK_STATUS, P.WORK_FAIL,
                                   P.WORK_EXCEPTION, P.WORK_WARNING])
def test_work_result_for_an_unknown_handle_is_job_not_found(broker: Broker, ptype: int) -> None:
    w = worker(broker, b"f")
    special: dict[int, list[bytes]] = {P.WORK_STATUS: [b"H:t:99", b"1", b"2"],
                                       P.WORK_FAIL: [b"H:t:99"]}
    fields = special.get(ptype, [b"H:t:99", b"x"])
    broker.handle(w, ptype, *fields)
    [(reply, got)] = take(w)
    assert (reply, got[0]) == (P.ERROR, ErrorCode.JOB_NOT_FOUND)


def test_work_result_from_a_worker_not_holding_the_job_is_rejected(broker: Broker) -> None:
    c = broker.connect()
    h = submit(broker, c, b"f")
    holder, other = worker(broker, b"f"), worker(broker, b"f")
    grab_handle(broker, holder)
    broker.handle(other, P.WORK_COMPLETE, h, b"forged")
    [(reply, got)] = take(other)
    assert (reply, got[0]) == (P.ERROR, ErrorCode.JOB_NOT_FOUND)
    assert take(c) == []
    assert h in broker.jobs


# ---------------------------------------------------------------- rejected and malformed input


@pytest.mark.parametrize(("ptype", "fields"), [
    (P.ALL_YOURS, []),
    (P.NOOP, []),
    (P.JOB_CREATED, [b"H:x:1"]),
    (P.STATUS_RES, [b"H", b"0", b"0", b"0", b"0"]),
])
def test_packets_gearmand_rejects_are_invalid_command(broker: Broker, ptype: int,
                                                      fields: list[bytes]) -> None:
    c = broker.connect()
    broker.handle(c, ptype, *fields)
    assert take(c) == [(P.ERROR, [ErrorCode.INVALID_COMMAND, b"Command not expected"])]
    assert dict(broker.jobs.items()) == {}


@pytest.mark.parametrize(("ptype", "fields"), [
    (P.SUBMIT_JOB, [b"f"]),
    (P.SUBMIT_JOB_BG, [b"f", b"u"]),
    (P.WORK_COMPLETE, [b"H:t:1"]),
    (P.CAN_DO_TIMEOUT, [b"f"]),
    (P.SUBMIT_JOB_EPOCH, [b"f", b"", b"0"]),
    (P.SUBMIT_REDUCE_JOB, [b"f", b"u", b"r", b"data"]),
])
def test_wrong_field_count_drops_the_connection_without_a_reply(
        broker: Broker, ptype: int, fields: list[bytes]) -> None:
    """gearmand reads past the body for the missing NULs and ends up closing the
    connection without a word; we close at once, also without a word."""
    c = broker.connect()
    broker.handle(c, ptype, *fields)
    assert take(c) == []
    assert c.closed
    assert broker.hangups == [c]
    assert dict(broker.jobs.items()) == {}
    broker.handle(c, P.ECHO_REQ, b"still here")  # nothing more is read from it
    assert take(c) == []


def test_bare_handle_work_complete_requeues_the_job_like_a_lost_worker(
        broker: Broker) -> None:
    """Perl's Gearman::Worker sends WORK_COMPLETE with a false result ("" or "0") as the
    bare handle, no NUL: the job is not completed, its worker is dropped, the job goes
    back to the queue for another worker, and the client hears nothing (gearmand too)."""
    client, w1, w2 = broker.connect(), broker.connect(), broker.connect()
    broker.handle(client, P.SUBMIT_JOB, b"f", b"", b"data")
    [(_, [handle])] = take(client)
    broker.handle(w1, P.CAN_DO, b"f")
    broker.handle(w1, P.GRAB_JOB)
    assert take(w1)[0][0] == P.JOB_ASSIGN
    broker.handle(w1, P.WORK_COMPLETE, handle)
    assert w1.closed
    assert broker.hangups == [w1]
    assert take(client) == []
    broker.handle(w2, P.CAN_DO, b"f")
    broker.handle(w2, P.GRAB_JOB)
    assert take(w2) == [(P.JOB_ASSIGN, [handle, b"f", b"data"])]
    broker.handle(w2, P.WORK_COMPLETE, handle, b"")
    assert take(client) == [(P.WORK_COMPLETE, [handle, b""])]


def test_echo_returns_the_body_unchanged(broker: Broker) -> None:
    c = broker.connect()
    broker.handle(c, P.ECHO_REQ, b"a\0b\0")
    assert take(c) == [(P.ECHO_RES, [b"a\0b\0"])]


# ---------------------------------------------------------------- maxqueue


def test_maxqueue_enforced_with_queue_error(broker: Broker) -> None:
    c = broker.connect()
    submit(broker, c, b"f", unique=b"first")
    assert admin(broker, c, b"maxqueue f 2") == b"OK\r\n"
    submit(broker, c, b"f")
    broker.handle(c, P.SUBMIT_JOB, b"f", b"", b"third")
    assert take(c) == [(P.ERROR, [ErrorCode.QUEUE_ERROR, b"Job queue is full"])]
    # A coalesced submission adds no job, so the limit does not apply to it.
    assert submit(broker, c, b"f", unique=b"first")
    assert admin(broker, c, b"maxqueue f 0") == b"OK\r\n"  # 0 = unlimited again
    submit(broker, c, b"f")


def test_maxqueue_per_priority(broker: Broker) -> None:
    c = broker.connect()
    admin(broker, c, b"create function f")
    assert admin(broker, c, b"maxqueue f 0 1 0") == b"OK\r\n"
    submit(broker, c, b"f")
    broker.handle(c, P.SUBMIT_JOB_BG, b"f", b"", b"x")
    [(ptype, fields)] = take(c)
    assert (ptype, fields[0]) == (P.ERROR, ErrorCode.QUEUE_ERROR)
    submit(broker, c, b"f", ptype=P.SUBMIT_JOB_HIGH)
    submit(broker, c, b"f", ptype=P.SUBMIT_JOB_LOW)
