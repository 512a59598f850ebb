"""Flow control (issue 21) with plain calls: concurrency limits, pause and resume, rate
limits on job starts, admin changes and what is handed to the store."""

from __future__ import annotations

import json

import pytest

from gearshift.broker import Broker
from gearshift.broker._flow import (
    FlowRules,
    FlowSetting,
    Rate,
    parse_concurrency,
    parse_rate,
    parse_weight,
)

from ._harness import (
    Clock,
    P,
    RecordingStore,
    admin,
    grab,
    grab_handle,
    make_broker,
    submit,
    take,
    worker,
)

BG = P.SUBMIT_JOB_BG


def _broker(clock: Clock | None = None, concurrency: tuple[str, ...] = (),
            rate: tuple[str, ...] = (), weight: tuple[str, ...] = ()) -> Broker:
    rules = FlowRules([parse_concurrency(s) for s in concurrency],
                      [parse_rate(s) for s in rate], [parse_weight(s) for s in weight])
    return make_broker(clock, flow=rules)


def _queue(broker: Broker, function: bytes, count: int) -> list[bytes]:
    client = broker.connect()
    return [submit(broker, client, function, b"%d" % i, ptype=BG) for i in range(count)]


def _sleep(broker: Broker, peer: object) -> None:
    broker.handle(peer, P.PRE_SLEEP)  # type: ignore[arg-type]


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize(("spec", "problem"), [
    ("slow", "expected FUNC=N"), ("=2", "expected FUNC=N"), ("slow=", "expected FUNC=N"),
    ("slow=x", "'x' is not a whole number"), ("slow=-1", "outside"),
])
def test_bad_concurrency_specs_name_the_text(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        parse_concurrency(spec)
    assert spec in str(info.value)


@pytest.mark.parametrize("spec", ["tick=5", "tick=5/d", "tick=0/s", "tick=x/s", "tick=/s"])
def test_bad_rate_specs_name_the_text(spec: str) -> None:
    with pytest.raises(ValueError, match="rate") as info:
        parse_rate(spec)
    assert spec in str(info.value)


def test_rate_units_and_text_round_trip() -> None:
    assert parse_rate("a=5/s").rate == Rate(5, 1.0)
    assert parse_rate("a=100/m").rate == Rate(100, 60.0)
    assert parse_rate("a.*=7/hour").rate == Rate(7, 3600.0)
    setting = FlowSetting(2, Rate(5, 60.0), True, 3)
    assert setting.text == "concurrency=2 rate=5/m paused weight=3"
    assert FlowSetting.parse(setting.text) == setting
    lifted = FlowSetting(-1, Rate(0, 1.0))
    assert FlowSetting.parse(lifted.text) == lifted


def test_rules_resolve_exact_names_before_globs() -> None:
    rules = FlowRules([parse_concurrency("img.*=3"), parse_concurrency("img.big=1")])
    assert rules.for_function(b"img.big").concurrency == 1
    assert rules.for_function(b"img.small").concurrency == 3
    assert rules.for_function(b"other") == FlowSetting()


# ---------------------------------------------------------------- concurrency


def test_no_more_than_the_limit_run_and_the_next_goes_when_one_ends() -> None:
    broker = _broker(concurrency=("slow=2",))
    handles = _queue(broker, b"slow", 4)
    w1, w2, w3 = (worker(broker, b"slow") for _ in range(3))
    assert grab_handle(broker, w1) == handles[0]
    assert grab_handle(broker, w2) == handles[1]
    assert grab(broker, w3) == (P.NO_JOB, [])
    assert broker.functions[b"slow"].running == 2
    _sleep(broker, w3)
    assert take(w3) == []  # nothing it may run: it sleeps
    broker.handle(w1, P.WORK_COMPLETE, handles[0], b"")
    assert take(w3) == [(P.NOOP, [])]  # a slot came free: the sleeper is woken
    assert grab_handle(broker, w3) == handles[2]
    assert grab(broker, w1) == (P.NO_JOB, [])


def test_a_lost_worker_frees_its_slot() -> None:
    broker = _broker(concurrency=("slow=1",))
    handles = _queue(broker, b"slow", 2)
    w1, w2 = worker(broker, b"slow"), worker(broker, b"slow")
    assert grab_handle(broker, w1) == handles[0]
    assert grab(broker, w2) == (P.NO_JOB, [])
    broker.disconnect(w1)  # its job is queued again (at the back), and one may go out
    assert grab_handle(broker, w2) == handles[1]
    assert grab(broker, worker(broker, b"slow")) == (P.NO_JOB, [])
    broker.handle(w2, P.WORK_COMPLETE, handles[1], b"")
    assert grab_handle(broker, w2) == handles[0]


def test_a_failed_or_cancelled_job_frees_its_slot() -> None:
    broker = _broker(concurrency=("slow=1",))
    handles = _queue(broker, b"slow", 3)
    w = worker(broker, b"slow")
    assert grab_handle(broker, w) == handles[0]
    broker.handle(w, P.WORK_FAIL, handles[0])
    assert grab_handle(broker, w) == handles[1]
    assert broker.cancel(handles[1])
    assert grab_handle(broker, w) == handles[2]


def test_a_worker_gets_another_functions_job_while_one_is_at_its_limit() -> None:
    broker = _broker(concurrency=("slow=1",))
    _queue(broker, b"slow", 2)
    fast = _queue(broker, b"fast", 1)
    w1, w2 = worker(broker, b"slow", b"fast"), worker(broker, b"slow", b"fast")
    assert grab(broker, w1)[1][1] == b"slow"
    assert grab_handle(broker, w2) == fast[0]
    assert grab(broker, w2) == (P.NO_JOB, [])


def test_limits_apply_to_foreground_jobs_too_and_their_clients_just_wait() -> None:
    broker = _broker(concurrency=("slow=1",))
    client = broker.connect()
    h1 = submit(broker, client, b"slow", b"a")
    h2 = submit(broker, client, b"slow", b"b")
    w1, w2 = worker(broker, b"slow"), worker(broker, b"slow")
    assert grab_handle(broker, w1) == h1
    assert grab(broker, w2) == (P.NO_JOB, [])
    assert take(client) == []  # told nothing new
    broker.handle(w1, P.WORK_COMPLETE, h1, b"done")
    assert grab_handle(broker, w2) == h2


def test_a_limit_of_zero_is_a_pause() -> None:
    broker = _broker(concurrency=("held=0",))
    _queue(broker, b"held", 1)
    w = worker(broker, b"held")
    assert grab(broker, w) == (P.NO_JOB, [])
    peer = broker.connect()
    assert admin(broker, peer, b"resume held") == b"OK\r\n"
    assert grab(broker, w)[0] == P.JOB_ASSIGN


def test_functions_without_limits_have_no_flow_state() -> None:
    broker = _broker(concurrency=("slow=1",))
    _queue(broker, b"other", 1)
    assert broker.functions[b"other"].flow is None
    assert broker.functions[b"other"].blocked is False


# ---------------------------------------------------------------- pause and resume


def test_a_paused_function_queues_but_hands_out_nothing_until_resumed() -> None:
    broker = make_broker()
    peer = broker.connect()
    assert admin(broker, peer, b"pause f") == b"OK\r\n"
    handles = _queue(broker, b"f", 3)  # accepted and queued
    w1, w2 = worker(broker, b"f"), worker(broker, b"f")
    assert grab(broker, w1) == (P.NO_JOB, [])
    _sleep(broker, w1)
    _sleep(broker, w2)
    assert take(w1) == []
    assert take(w2) == []
    status = admin(broker, peer, b"status")
    assert status == b"f\t3\t0\t2\n.\n"  # gearmand's four columns, unchanged
    assert admin(broker, peer, b"resume f") == b"OK\r\n"
    assert take(w1) == [(P.NOOP, [])]
    assert take(w2) == [(P.NOOP, [])]
    got = [grab_handle(broker, w1), grab_handle(broker, w2), grab_handle(broker, w1)]
    assert got == handles


def test_pausing_a_running_function_lets_running_jobs_finish() -> None:
    broker = make_broker()
    handles = _queue(broker, b"f", 2)
    w = worker(broker, b"f")
    peer = broker.connect()
    assert grab_handle(broker, w) == handles[0]
    assert admin(broker, peer, b"pause f") == b"OK\r\n"
    broker.handle(w, P.WORK_COMPLETE, handles[0], b"")
    assert grab(broker, w) == (P.NO_JOB, [])
    assert broker.functions[b"f"].completed == 1


def test_limits_lists_settings_and_usage_as_json() -> None:
    broker = _broker(concurrency=("slow=2",))
    _queue(broker, b"slow", 3)
    w = worker(broker, b"slow")
    grab_handle(broker, w)
    peer = broker.connect()
    assert admin(broker, peer, b"pause later") == b"OK\r\n"  # not seen yet
    reply = admin(broker, peer, b"limits")
    assert reply.endswith(b"\n.\n")
    records = [json.loads(line) for line in reply.splitlines()[:-1]]
    assert records == [
        {"function": "slow", "concurrency": 2, "rate": None, "weight": 1, "paused": False,
         "admin": None, "running": 1, "queued": 2, "held": False},
        {"function": "later", "concurrency": None, "rate": None, "weight": 1,
         "paused": True, "admin": "paused", "running": 0, "queued": 0, "held": False},
    ]


@pytest.mark.parametrize(("line", "code"), [
    (b"pause", b"INVALID_ARGUMENTS"), (b"pause a b", b"INVALID_ARGUMENTS"),
    (b"limit f", b"INVALID_ARGUMENTS"), (b"limit f concurrency=x", b"INVALID_ARGUMENTS"),
    (b"limit f rate=5", b"INVALID_ARGUMENTS"), (b"limit f speed=1", b"INVALID_ARGUMENTS"),
])
def test_bad_admin_flow_commands_answer_err(line: bytes, code: bytes) -> None:
    broker = make_broker()
    reply = admin(broker, broker.connect(), line)
    assert reply.startswith(b"ERR " + code + b" ")
    assert reply.endswith(b"\r\n")
    assert not broker.flow_overrides


def test_admin_limit_changes_a_running_server_and_reset_restores_the_rule() -> None:
    broker = _broker(concurrency=("f=1",))
    handles = _queue(broker, b"f", 3)
    w1, w2, w3 = (worker(broker, b"f") for _ in range(3))
    peer = broker.connect()
    assert grab_handle(broker, w1) == handles[0]
    assert grab(broker, w2) == (P.NO_JOB, [])
    _sleep(broker, w2)
    assert admin(broker, peer, b"limit f concurrency=2") == b"OK\r\n"
    assert take(w2) == [(P.NOOP, [])]
    assert grab_handle(broker, w2) == handles[1]
    assert grab(broker, w3) == (P.NO_JOB, [])
    assert admin(broker, peer, b"limit f concurrency=none") == b"OK\r\n"
    assert grab_handle(broker, w3) == handles[2]
    assert admin(broker, peer, b"limit f reset") == b"OK\r\n"
    assert broker.flow_setting(b"f").concurrency == 1
    assert broker.functions[b"f"].blocked  # three running, limit 1 again


def test_admin_settings_go_to_the_store_and_come_back() -> None:
    store = RecordingStore()
    broker = make_broker()
    broker.store = store
    peer = broker.connect()
    assert admin(broker, peer, b"limit f concurrency=3 rate=10/m") == b"OK\r\n"
    assert admin(broker, peer, b"pause f") == b"OK\r\n"
    assert store.flows == {b"f": "concurrency=3 rate=10/m paused"}
    assert admin(broker, peer, b"limit f reset") == b"OK\r\n"
    assert store.flows == {b"f": None}
    restarted = make_broker()
    restarted.restore_flow(b"g", "concurrency=0")
    _queue(restarted, b"g", 1)
    assert grab(restarted, worker(restarted, b"g")) == (P.NO_JOB, [])


# ---------------------------------------------------------------- rate


def test_rate_allows_a_burst_then_one_start_per_token() -> None:
    clock = Clock()
    broker = _broker(clock, rate=("tick=2/s",))
    handles = _queue(broker, b"tick", 5)
    w = worker(broker, b"tick")
    for handle in handles[:2]:  # the bucket starts full: a burst of 2
        assert grab_handle(broker, w) == handle
        broker.handle(w, P.WORK_COMPLETE, handle, b"")
    assert grab(broker, w) == (P.NO_JOB, [])
    _sleep(broker, w)
    assert take(w) == []
    due = broker.next_deadline()
    assert due == pytest.approx(clock.now + 0.5)  # the next token
    clock.advance(0.5)
    broker.run_timers()
    assert take(w) == [(P.NOOP, [])]
    assert grab_handle(broker, w) == handles[2]
    broker.handle(w, P.WORK_COMPLETE, handles[2], b"")
    assert grab(broker, w) == (P.NO_JOB, [])


def test_an_idle_rate_limited_function_arms_no_timer() -> None:
    clock = Clock()
    broker = _broker(clock, rate=("tick=1/s",))
    handles = [submit(broker, broker.connect(), b"tick")]  # foreground: no kept outcome
    w = worker(broker, b"tick")
    assert grab_handle(broker, w) == handles[0]
    broker.handle(w, P.WORK_COMPLETE, handles[0], b"")
    assert broker.next_deadline() is not None  # the token's return, once
    clock.advance(1.0)
    broker.run_timers()
    assert broker.next_deadline() is None  # nothing queued: no timer spins
    assert not broker.functions[b"tick"].blocked


def test_an_early_timer_rearms_for_the_rest_of_the_token() -> None:
    clock = Clock()
    broker = _broker(clock, rate=("tick=1/s",))
    handles = _queue(broker, b"tick", 2)
    w = worker(broker, b"tick")
    assert grab_handle(broker, w) == handles[0]
    clock.advance(0.9)
    broker.run_timers()
    assert broker.functions[b"tick"].blocked
    assert broker.next_deadline() == pytest.approx(clock.now + 0.1)
    clock.advance(0.1)
    broker.run_timers()
    assert grab_handle(broker, w) == handles[1]


def test_rate_and_concurrency_together() -> None:
    clock = Clock()
    broker = _broker(clock, concurrency=("f=1",), rate=("f=10/s",))
    handles = _queue(broker, b"f", 2)
    w1, w2 = worker(broker, b"f"), worker(broker, b"f")
    assert grab_handle(broker, w1) == handles[0]
    assert grab(broker, w2) == (P.NO_JOB, [])
    assert broker.next_deadline() is None  # held by concurrency: no timer
    broker.handle(w1, P.WORK_COMPLETE, handles[0], b"")
    assert grab_handle(broker, w2) == handles[1]


# ---------------------------------------------------------------- weights


def _served(broker: Broker, peer: object, count: int) -> bytes:
    names = []
    for _ in range(count):
        ptype, fields = grab(broker, peer)  # type: ignore[arg-type]
        assert ptype == P.JOB_ASSIGN
        names.append(fields[1][0:1])
        broker.handle(peer, P.WORK_COMPLETE, fields[0], b"")  # type: ignore[arg-type]
    return b"".join(names)


def test_a_weight_gives_a_function_that_many_jobs_per_turn() -> None:
    broker = _broker(weight=("a=3",))
    _queue(broker, b"a", 6)
    _queue(broker, b"b", 6)
    w = worker(broker, b"a", b"b")
    assert _served(broker, w, 12) == b"aaabaaabbbbb"


def test_without_weights_functions_alternate() -> None:
    broker = make_broker()
    _queue(broker, b"a", 3)
    _queue(broker, b"b", 3)
    assert _served(broker, worker(broker, b"a", b"b"), 6) == b"ababab"


def test_admin_weight_changes_the_share() -> None:
    broker = make_broker()
    _queue(broker, b"a", 4)
    _queue(broker, b"b", 4)
    assert admin(broker, broker.connect(), b"limit b weight=2") == b"OK\r\n"
    assert _served(broker, worker(broker, b"a", b"b"), 8) == b"abbabbaa"


# ---------------------------------------------------------------- drain


def test_drain_refuses_new_jobs_and_finishes_what_it_has() -> None:
    broker = make_broker()
    handles = _queue(broker, b"f", 2)
    client, w, peer = broker.connect(), worker(broker, b"f"), broker.connect()
    assert grab_handle(broker, w) == handles[0]
    assert admin(broker, peer, b"drain") == b"OK\r\n"
    assert admin(broker, peer, b"drain status") == b"OK on\n"
    for ptype in (P.SUBMIT_JOB, P.SUBMIT_JOB_BG, P.SUBMIT_JOB_HIGH):
        broker.handle(client, ptype, b"f", b"", b"new")
        ((kind, fields),) = take(client)
        assert (kind, fields[0]) == (P.ERROR, b"QUEUE_ERROR")
        assert b"draining" in fields[1]
    broker.handle(w, P.WORK_COMPLETE, handles[0], b"")
    assert grab_handle(broker, w) == handles[1]  # queued work still goes out
    assert admin(broker, peer, b"drain off") == b"OK\r\n"
    submit(broker, client, b"f", ptype=BG)
    assert admin(broker, peer, b"drain sideways").startswith(b"ERR INVALID_ARGUMENTS")


def test_admin_flow_settings_are_bounded() -> None:
    broker = make_broker()
    peer = broker.connect()
    long_name = b"f" * 257
    reply = admin(broker, peer, b"pause " + long_name)
    assert reply.startswith(b"ERR INVALID_ARGUMENTS")
    for i in range(1000):
        assert broker.set_flow(b"f%d" % i, FlowSetting(paused=True))
    assert admin(broker, peer, b"pause one-too-many").startswith(b"ERR QUEUE_ERROR")
    assert admin(broker, peer, b"resume f0") == b"OK\r\n"  # frees a place
    assert admin(broker, peer, b"pause one-too-many") == b"OK\r\n"


def test_admin_maxqueue_is_kept_in_the_store_and_restored() -> None:
    store = RecordingStore()
    broker = make_broker()
    broker.store = store
    console = broker.connect("127.0.0.1", 1)
    assert admin(broker, console, b"maxqueue f 2") == b"OK\r\n"
    assert admin(broker, console, b"maxqueue g 1 2 3") == b"OK\r\n"
    assert store.flows == {b"f": "maxqueue=2,2,2", b"g": "maxqueue=1,2,3"}
    restarted = make_broker()
    for name, text in store.flows.items():
        assert text is not None
        restarted.restore_flow(name, text)
    c = restarted.connect()
    submit(restarted, c, b"f")
    submit(restarted, c, b"f")
    restarted.handle(c, P.SUBMIT_JOB, b"f", b"", b"third")
    assert take(c) == [(P.ERROR, [b"QUEUE_ERROR", b"Job queue is full"])]
    assert restarted.function(b"g").max_queue == [1, 2, 3]
