"""Schedules (SUBMIT_JOB_SCHED, admin ``schedule``): cron slots, once each, by plain calls."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import pytest

from gearshift.broker import cron_from_gearman, validate_cron
from gearshift.broker._schedules import Schedule, ScheduleBook, next_slot

from ._harness import (
    Clock,
    P,
    RecordingStore,
    admin,
    grab,
    grab_handle,
    make_broker,
    take,
    worker,
)
from ._harness import _read as read_raw


def local(*args: int) -> float:
    """A local wall-clock time as unix seconds (schedules run on the server's local time)."""
    return datetime(*args).timestamp()  # type: ignore[arg-type]


def test_submit_job_sched_runs_one_job_per_slot() -> None:
    clock = Clock(local(2026, 12, 4, 10, 0, 30))
    broker = make_broker(clock)
    c, w = broker.connect(), worker(broker, b"report")
    # Every minute 5 past the hour... as the packet's fields: minute=5, the rest empty.
    broker.handle(c, P.SUBMIT_JOB_SCHED, b"report", b"", b"5", b"", b"", b"", b"", b"go")
    (ptype, (key,)), = take(c)
    assert ptype == P.JOB_CREATED
    assert key.startswith(b"S:")
    assert broker.next_deadline() == local(2026, 12, 4, 10, 5)
    clock.now = local(2026, 12, 4, 10, 5)
    broker.run_timers()
    ptype, fields = grab(broker, w)
    assert (ptype, fields[1:]) == (P.JOB_ASSIGN, [b"report", b"go"])
    broker.run_timers()  # the same slot again: nothing more
    assert grab(broker, w)[0] == P.NO_JOB
    assert broker.next_deadline() == local(2026, 12, 4, 11, 5)


def test_a_stalled_loop_fires_a_missed_slot_once_not_in_a_burst() -> None:
    book = ScheduleBook()
    start = local(2026, 12, 4, 10, 0, 30)
    book.add(Schedule(b"S:1", b"f", b"", "* * * * *", b""), start)
    fired = book.due(start + 600)  # ten slots passed while the loop was busy
    assert len(fired) == 1
    assert fired[0].last_fired == local(2026, 12, 4, 10, 1)
    assert book.next_deadline() == local(2026, 12, 4, 10, 11)


def test_restart_does_not_fire_a_slot_twice() -> None:
    book = ScheduleBook()
    slot = local(2026, 12, 4, 10, 5)
    # Fired at 10:05:00, the server restarted at 10:05:20: the next slot is 10:06.
    book.add(Schedule(b"S:1", b"f", b"", "* * * * *", b"", last_fired=slot), slot + 20)
    assert book.next_deadline() == slot + 60


def test_same_function_and_unique_replace_the_schedule() -> None:
    broker = make_broker(Clock(local(2026, 12, 4, 10, 0)))
    store = RecordingStore()
    broker.store = store
    c = broker.connect()
    for minute in (b"5", b"7"):
        broker.handle(c, P.SUBMIT_JOB_SCHED, b"f", b"nightly", minute, b"", b"", b"", b"",
                      b"d")
    # With a store, JOB_CREATED means "stored": nothing until the writes are answered.
    assert take(c) == []
    for ack, key in store.schedule_acks:
        broker.schedule_written(ack, key, None)
    keys = [fields[0] for _, fields in take(c)]
    assert keys[0] == keys[1]
    assert len(broker.schedules) == 1
    assert broker.schedules.schedules[keys[0]].cron == "7 * * * *"
    saved = store.schedules[keys[0]]
    assert saved is not None
    assert saved.cron == "7 * * * *"


def test_a_failed_schedule_write_answers_queue_error_and_forgets_it() -> None:
    broker = make_broker(Clock(local(2026, 12, 4, 10, 0)))
    store = RecordingStore()
    broker.store = store
    c = broker.connect()
    assert admin(broker, c, b"schedule add f 5 * * * *") == b""  # held for the write
    ack, key = store.schedule_acks[-1]
    broker.schedule_written(ack, key, "store down")
    assert read_raw(c) == b"ERR QUEUE_ERROR store+down\r\n"
    assert admin(broker, c, b"schedules") == b".\n"
    assert len(broker.schedules) == 0
    assert store.schedules[key] is None  # the queued write is cancelled by a delete


def test_day_of_week_counts_from_monday_as_the_protocol_says() -> None:
    assert cron_from_gearman(b"0", b"9", b"", b"", b"0") == "0 9 * * 1"
    assert cron_from_gearman(b"", b"", b"", b"", b"6") == "* * * * 0"
    assert cron_from_gearman(b"0", b"0", b"", b"", b"0-4") == "0 0 * * 1,2,3,4,5"
    assert cron_from_gearman(b"", b"", b"", b"", b"*/2") == "* * * * 0,1,3,5"
    assert cron_from_gearman(b"*/15", b"", b"", b"", b"5,6") == "*/15 * * * 0,6"
    assert cron_from_gearman(b"", b"", b"", b"", b"sat") == "* * * * 6"
    # Monday 2026-12-07 09:00 local is the first "0 9 * * 1" slot after Friday the 4th.
    assert next_slot("0 9 * * 1", local(2026, 12, 4, 12, 0)) == local(2026, 12, 7, 9, 0)


@pytest.mark.parametrize("fields", [
    (b"61", b"", b"", b"", b""), (b"", b"", b"30", b"2", b""), (b"", b"", b"", b"", b"7"),
    (b"x", b"", b"", b"", b""), (b"", b"", b"", b"", b"5-1"), (b"\xff", b"", b"", b"", b""),
])
def test_bad_or_never_firing_specs_are_rejected(fields: tuple[bytes, ...]) -> None:
    broker = make_broker(Clock(local(2026, 12, 4, 10, 0)))
    c = broker.connect()
    broker.handle(c, P.SUBMIT_JOB_SCHED, b"f", b"", *fields, b"d")
    (ptype, reply), = take(c)
    assert (ptype, reply[0]) == (P.ERROR, b"INVALID_ARGUMENT")
    assert len(broker.schedules) == 0


def test_admin_schedule_add_list_rm() -> None:
    clock = Clock(local(2026, 12, 4, 10, 0, 30))
    broker = make_broker(clock)
    c, w = broker.connect(), worker(broker, b"mail")
    data = base64.b64encode(b"\x00digest").decode()
    reply = admin(broker, c, f"schedule add mail */30 * * * 1-5 unique=d data={data}".encode())
    assert reply.startswith(b"OK S:")
    key = reply[3:].strip()
    listed = admin(broker, c, b"schedules").split(b"\n")
    record = json.loads(listed[0])
    assert record["cron"] == "*/30 * * * 1-5"
    assert record["unique"] == "d"
    assert record["next"] == local(2026, 12, 4, 10, 30)  # a Friday
    clock.now = local(2026, 12, 4, 10, 30)
    broker.run_timers()
    assert grab(broker, w)[1][1:] == [b"mail", b"\x00digest"]
    assert admin(broker, c, b"schedule rm " + key) == b"OK\r\n"
    assert admin(broker, c, b"schedule rm " + key) == b"ERR UNKNOWN_SCHEDULE\r\n"
    assert admin(broker, c, b"schedules") == b".\n"
    for bad in (b"schedule add mail 0 0 30 2 *", b"schedule add mail * * *",
                b"schedule add mail * * * * * colour=red", b"schedule add mail * * * * * data=!",
                b"schedule bogus"):
        assert admin(broker, c, bad).startswith(b"ERR INVALID_ARGUMENTS"), bad


def test_a_slot_whose_previous_run_is_still_going_is_skipped() -> None:
    clock = Clock(local(2026, 12, 4, 10, 0, 30))
    broker = make_broker(clock)
    c, w = broker.connect(), worker(broker, b"f")
    broker.handle(c, P.SUBMIT_JOB_SCHED, b"f", b"only-one", b"", b"", b"", b"", b"", b"d")
    take(c)
    for minute in (1, 2):
        clock.now = local(2026, 12, 4, 10, minute)
        broker.run_timers()
    handle = grab_handle(broker, w)
    assert grab(broker, w)[0] == P.NO_JOB  # the 10:02 slot coalesced onto the 10:01 job
    broker.handle(w, P.WORK_COMPLETE, handle, b"")


def test_validate_cron_needs_five_fields() -> None:
    assert validate_cron("  0  9 * *   1 ", 0) == "0 9 * * 1"
    with pytest.raises(ValueError, match="5 fields"):
        validate_cron("0 9 * *", 0)
