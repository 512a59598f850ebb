"""Scenarios for the job life cycle: submit, grab, work updates, status, coalescing,
priorities, sleep and wake-up, requeues and retries, epoch jobs."""

from __future__ import annotations

import time

from gearshift.protocol import PacketType

from ._script import SCENARIOS, Scenario, handle_of, scenario, submit, worker
from ._session import Session

P = PacketType


# ---------------------------------------------------------------------------- basics


@scenario()
def echo(s: Session) -> None:
    c = s.connect("c1")
    c.send(P.ECHO_REQ, b"hello\0world")
    c.recv(1)
    c.send(P.ECHO_REQ, b"")
    c.recv(1)


@scenario()
def grab_job(s: Session) -> None:
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u1", b"payload")
    w.send(P.GRAB_JOB)
    h = handle_of(w.recv(1))
    w.send(P.WORK_COMPLETE, h, b"result\0with nul")
    c.recv(1)
    w.send(P.GRAB_JOB)
    w.recv(1)
    c.quiet()


@scenario()
def grab_job_uniq(s: Session) -> None:
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u1", b"payload")
    submit(c, P.SUBMIT_JOB, b"f", b"", b"no unique")
    w.send(P.GRAB_JOB_UNIQ)
    h1 = handle_of(w.recv(1))
    w.send(P.GRAB_JOB_UNIQ)
    h2 = handle_of(w.recv(1))
    w.send(P.WORK_COMPLETE, h1, b"r1")
    c.recv(1)
    w.send(P.WORK_COMPLETE, h2, b"")
    c.recv(1)
    w.send(P.GRAB_JOB_UNIQ)
    w.recv(1)


@scenario()
def grab_job_all(s: Session) -> None:
    """A reduce job gets JOB_ASSIGN_ALL; a plain one gets JOB_ASSIGN_UNIQ (4 fields)."""
    w = worker(s, "w1", b"map")
    c = s.connect("c1")
    c.send(P.SUBMIT_REDUCE_JOB, b"map", b"r1", b"reducer", b"", b"a b c")
    c.recv(1)
    c.send(P.SUBMIT_REDUCE_JOB_BACKGROUND, b"map", b"r2", b"red2", b"", b"d e")
    c.recv(1)
    submit(c, P.SUBMIT_JOB, b"map", b"plain", b"x")
    w.send(P.GRAB_JOB_ALL)
    h1 = handle_of(w.recv(1))
    w.send(P.GRAB_JOB_ALL)
    w.recv(1)
    w.send(P.GRAB_JOB_ALL)
    w.recv(1)
    w.send(P.WORK_COMPLETE, h1, b"reduced")
    c.recv(1)
    w.send(P.GRAB_JOB_ALL)
    w.recv(1)


@scenario()
def work_updates_to_coalesced_clients(s: Session) -> None:
    """WORK_DATA/WARNING/STATUS/COMPLETE reach both attached clients; a bg dup gets none."""
    w = worker(s, "w1", b"f")
    c1, c2, c3 = s.connect("c1"), s.connect("c2"), s.connect("c3")
    submit(c1, P.SUBMIT_JOB, b"f", b"same", b"one")
    submit(c2, P.SUBMIT_JOB_HIGH, b"f", b"same", b"two")
    submit(c3, P.SUBMIT_JOB_BG, b"f", b"same", b"three")
    w.send(P.GRAB_JOB_UNIQ)
    h = handle_of(w.recv(1))
    w.send(P.WORK_DATA, h, b"chunk\01")
    w.send(P.WORK_WARNING, h, b"careful")
    w.send(P.WORK_STATUS, h, b"1", b"2")
    w.send(P.WORK_COMPLETE, h, b"done")
    for c in (c1, c2):
        c.recv(4)
    c3.quiet()


@scenario()
def work_fail(s: Session) -> None:
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"", b"x")
    w.send(P.GRAB_JOB)
    h = handle_of(w.recv(1))
    w.send(P.WORK_FAIL, h)
    c.recv(1)
    w.send(P.GRAB_JOB)
    w.recv(1)


@scenario()
def work_exception(s: Session) -> None:
    """Exception-enabled client gets WORK_EXCEPTION; the other a WORK_FAIL 'handle\\0'."""
    w = worker(s, "w1", b"f")
    c1, c2 = s.connect("c1"), s.connect("c2")
    c1.send(P.OPTION_REQ, b"exceptions")
    c1.recv(1)
    submit(c1, P.SUBMIT_JOB, b"f", b"u", b"x")
    submit(c2, P.SUBMIT_JOB, b"f", b"u", b"x")
    w.send(P.GRAB_JOB)
    h = handle_of(w.recv(1))
    w.send(P.WORK_EXCEPTION, h, b"boom")
    c1.recv(1)
    c2.recv(1)
    # The exception ended the job: it is gone.
    c2.send(P.GET_STATUS, h)
    c2.recv(1)
    w.send(P.GRAB_JOB)
    w.recv(1)


@scenario()
def option_req(s: Session) -> None:
    c = s.connect("c1")
    for name in (b"exceptions", b"EXCEPTIONS", b"bogus", b""):
        c.send(P.OPTION_REQ, name)
        c.recv(1)
    c.send(P.ECHO_REQ, b"still open")
    c.recv(1)


# ------------------------------------------------------------------------ status


@scenario()
def get_status(s: Session) -> None:
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    c.send(P.GET_STATUS, b"no-such-handle")
    c.recv(1)
    h = submit(c, P.SUBMIT_JOB_BG, b"f", b"u1", b"x")
    c.send(P.GET_STATUS, h)
    c.recv(1)
    w.send(P.GRAB_JOB)
    w.recv(1)
    w.sync()
    c.send(P.GET_STATUS, h)
    c.recv(1)
    w.send(P.WORK_STATUS, h, b"3", b"10")
    w.sync()
    c.send(P.GET_STATUS, h)
    c.recv(1)
    w.send(P.WORK_STATUS, h, b"7x", b"junk")  # gearmand atoi()s what it stores
    w.sync()
    c.send(P.GET_STATUS, h)
    c.recv(1)
    w.send(P.WORK_COMPLETE, h, b"")
    w.sync()
    c.send(P.GET_STATUS, h)
    c.recv(1)


@scenario()
def get_status_unique(s: Session) -> None:
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    c.send(P.GET_STATUS_UNIQUE, b"nope")
    c.recv(1)
    submit(c, P.SUBMIT_JOB, b"f", b"key", b"x")
    c2 = s.connect("c2")
    submit(c2, P.SUBMIT_JOB, b"f", b"key", b"x")
    c.send(P.GET_STATUS_UNIQUE, b"key")
    c.recv(1)
    w.send(P.GRAB_JOB)
    h = handle_of(w.recv(1))
    w.send(P.WORK_STATUS, h, b"1", b"4")
    w.sync()
    c.send(P.GET_STATUS_UNIQUE, b"key")
    c.recv(2)  # WORK_STATUS forwarded, then STATUS_RES_UNIQUE
    c2.recv(1)
    c.send(P.GET_STATUS_UNIQUE, b"")
    c.recv(1)
    w.send(P.WORK_COMPLETE, h, b"")
    c.recv(1)
    c2.recv(1)
    c.send(P.GET_STATUS_UNIQUE, b"key")
    c.recv(1)


# -------------------------------------------------------------------- coalescing


@scenario()
def unique_coalescing(s: Session) -> None:
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"k", b"a")
    submit(c, P.SUBMIT_JOB_LOW_BG, b"f", b"k", b"different data")  # same job
    submit(c, P.SUBMIT_JOB_BG, b"g", b"k", b"a")  # other function: new job
    submit(c, P.SUBMIT_JOB_BG, b"f", b"-", b"payload")  # '-' = payload is the key
    submit(c, P.SUBMIT_JOB_BG, b"f", b"-", b"payload")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"-", b"other payload")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"", b"a")  # empty unique never coalesces
    submit(c, P.SUBMIT_JOB_BG, b"f", b"", b"a")
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    admin.admin(b"show unique jobs", True, sort=True)


@scenario()
def unique_too_long(s: Session) -> None:
    c = s.connect("c1")
    c.send(P.SUBMIT_JOB_BG, b"f", b"u" * 65, b"x")
    c.recv(1)
    c.send(P.ECHO_REQ, b"still open")
    c.recv(1)
    submit(c, P.SUBMIT_JOB_BG, b"f", b"v" * 64, b"x")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"w" * 63, b"x")
    c.send(P.GET_STATUS_UNIQUE, b"w" * 63)
    c.recv(1)
    # Not asked: GET_STATUS_UNIQUE with the 64-byte key. gearmand 1.1.20 sometimes sends
    # nothing and sometimes closes the connection (it stored the key cut to 63 bytes).
    c.send(P.GET_STATUS_UNIQUE, b"v" * 63)
    c.recv(1)
    admin = s.connect("admin")
    admin.admin(b"show unique jobs", True, sort=True)


# -------------------------------------------------------------------- priorities


@scenario()
def priority_one_function(s: Session) -> None:
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_LOW_BG, b"f", b"low", b"l")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"normal", b"n")
    submit(c, P.SUBMIT_JOB_HIGH_BG, b"f", b"high", b"h")
    submit(c, P.SUBMIT_JOB_LOW_BG, b"f", b"low2", b"l2")
    submit(c, P.SUBMIT_JOB_HIGH_BG, b"f", b"high2", b"h2")
    admin = s.connect("admin")
    admin.admin(b"prioritystatus", True, sort=True)
    w = worker(s, "w1", b"f")
    for _ in range(6):
        w.send(P.GRAB_JOB_UNIQ)
        w.recv(1)


@scenario()
def foreground_priorities(s: Session) -> None:
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_LOW, b"f", b"low", b"l")
    submit(c, P.SUBMIT_JOB, b"f", b"normal", b"n")
    submit(c, P.SUBMIT_JOB_HIGH, b"f", b"high", b"h")
    w = worker(s, "w1", b"f")
    for _ in range(3):
        w.send(P.GRAB_JOB)
        h = handle_of(w.recv(1))
        w.send(P.WORK_COMPLETE, h, b"done")
        c.recv(1)


@scenario()
def priority_two_functions(s: Session) -> None:
    """gearmand 2.0: global priority (+ round robin); 1.1.20: registration order wins."""
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_HIGH_BG, b"a", b"a-high", b"")
    submit(c, P.SUBMIT_JOB_BG, b"a", b"a-normal", b"")
    submit(c, P.SUBMIT_JOB_LOW_BG, b"b", b"b-low", b"")
    submit(c, P.SUBMIT_JOB_BG, b"b", b"b-normal", b"")
    w = worker(s, "w1", b"a", b"b")
    for _ in range(5):
        w.send(P.GRAB_JOB_UNIQ)
        w.recv(1)


# ------------------------------------------------------------------ sleep / wake


@scenario()
def pre_sleep_noop(s: Session) -> None:
    w = worker(s, "w1", b"f")
    poller = worker(s, "w2", b"f")  # never sleeps, so never woken
    w.send(P.PRE_SLEEP)
    w.quiet()
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"j1", b"")
    w.recv(1)  # NOOP
    submit(c, P.SUBMIT_JOB_BG, b"f", b"j2", b"")
    w.quiet()  # at most one NOOP per sleep
    poller.quiet(0.05)
    w.send(P.GRAB_JOB)
    w.recv(1)
    w.send(P.PRE_SLEEP)  # j2 is still queued: woken at once
    w.recv(1)
    w.send(P.GRAB_JOB)
    w.recv(1)
    w.send(P.PRE_SLEEP)
    w.quiet()
    submit(c, P.SUBMIT_JOB_BG, b"other", b"j3", b"")  # not w1's function
    w.quiet()


@scenario()
def wakeup_two_sleepers(s: Session) -> None:
    """Two sleeping workers: gearmand (-w 0) wakes both for the first job; we wake one per job."""
    w1 = worker(s, "w1", b"f")
    w2 = worker(s, "w2", b"f")
    w1.send(P.PRE_SLEEP)
    w2.send(P.PRE_SLEEP)
    w1.sync()
    w2.sync()
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"j1", b"")
    s.pooled([w1, w2])
    submit(c, P.SUBMIT_JOB_BG, b"f", b"j2", b"")  # wakes a sleeper not yet woken, if any
    s.pooled([w1, w2])


# --------------------------------------------------------------------- requeue


@scenario()
def cant_do_requeues(s: Session) -> None:
    w1 = worker(s, "w1", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    w1.send(P.GRAB_JOB)
    h = handle_of(w1.recv(1))
    w1.send(P.CANT_DO, b"f")
    w1.sync()
    w1.send(P.WORK_COMPLETE, h, b"too late")  # no longer its job
    w1.recv(1)
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    admin.admin(b"show jobs", True, sort=True)
    w2 = worker(s, "w2", b"f")
    w2.send(P.GRAB_JOB)
    h = handle_of(w2.recv(1))
    w2.send(P.WORK_COMPLETE, h, b"ok")
    c.recv(1)
    c.quiet()


@scenario()
def reset_abilities_requeues(s: Session) -> None:
    w1 = worker(s, "w1", b"f", b"g")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    w1.send(P.GRAB_JOB)
    w1.recv(1)
    w1.send(P.RESET_ABILITIES)
    w1.sync()
    w1.send(P.GRAB_JOB)
    w1.recv(1)
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    w2 = worker(s, "w2", b"f")
    w2.send(P.GRAB_JOB)
    h = handle_of(w2.recv(1))
    w2.send(P.WORK_COMPLETE, h, b"ok")
    c.recv(1)


@scenario()
def worker_disconnect_requeues(s: Session) -> None:
    """The requeue after a disconnect NOOPs the sleeping w2 (which also syncs the script)."""
    w1 = worker(s, "w1", b"f")
    w2 = worker(s, "w2", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    w1.send(P.GRAB_JOB)
    h = handle_of(w1.recv(1))
    w1.send(P.WORK_STATUS, h, b"1", b"2")
    c.recv(1)
    w2.send(P.PRE_SLEEP)
    w2.sync()
    w1.close()
    w2.recv(1)  # NOOP: the job is back in the queue
    w2.send(P.GRAB_JOB)
    h = handle_of(w2.recv(1))
    c.send(P.GET_STATUS, h)
    c.recv(1)  # numerator/denominator were reset by the requeue
    w2.send(P.WORK_COMPLETE, h, b"ok")
    c.recv(1)


@scenario()
def can_do_timeout_requeues(s: Session) -> None:
    """CAN_DO_TIMEOUT (ms): an overdue job is requeued silently and counts a retry."""
    w1 = s.connect("w1")
    w1.send(P.CAN_DO_TIMEOUT, b"f", b"1000")
    w1.sync()
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    w1.send(P.GRAB_JOB)
    h = handle_of(w1.recv(1))
    s.wait(1.6)
    c.quiet()
    admin = s.connect("admin")
    admin.admin(b"show jobs", True, sort=True)
    w1.send(P.WORK_COMPLETE, h, b"too late")
    w1.recv(1)
    w1.send(P.GRAB_JOB)
    h = handle_of(w1.recv(1))
    w1.send(P.WORK_COMPLETE, h, b"ok")
    c.recv(1)


@scenario("--job-retries=2")
def job_retries(s: Session) -> None:
    """-j 2: the second requeue drops the job and fails it to its client."""
    w1 = worker(s, "w1", b"f")
    w2 = worker(s, "w2", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    w1.send(P.GRAB_JOB)
    w1.recv(1)
    w2.send(P.PRE_SLEEP)
    w2.sync()
    w1.close()
    w2.recv(1)  # NOOP: first requeue
    c.quiet()  # the client is not told
    w2.send(P.GRAB_JOB)
    w2.recv(1)
    w2.close()
    c.recv(1)  # second requeue: dropped, WORK_FAIL
    w3 = worker(s, "w3", b"f")
    w3.send(P.GRAB_JOB)
    w3.recv(1)
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)


@scenario()
def client_disconnect_drops_queued_job(s: Session) -> None:
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    c.close()
    s.wait(0.2)  # a close has no reply to wait for; give the server time to see it
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    w = worker(s, "w1", b"f")
    w.send(P.GRAB_JOB)
    w.recv(1)


# ------------------------------------------------------------------------ epoch


@scenario()
def epoch_past(s: Session) -> None:
    w = worker(s, "w1", b"f")
    w.send(P.PRE_SLEEP)
    w.sync()
    c = s.connect("c1")
    past = b"%d" % (time.time() - 100)
    c.send(P.SUBMIT_JOB_EPOCH, b"f", b"e1", past, b"late", label="'f' 'e1' <now-100> 'late'")
    c.recv(1)
    w.recv(1)  # NOOP
    w.send(P.GRAB_JOB_UNIQ)
    w.recv(1)


@scenario()
def epoch_future(s: Session) -> None:
    """Due in 1-2 s: gearmand 2.0 / gearshift NOOP the sleeper when due; 1.1.20 does not."""
    w = worker(s, "w1", b"f")
    w.send(P.GRAB_JOB)
    w.recv(1)
    w.send(P.PRE_SLEEP)
    w.sync()
    c = s.connect("c1")
    due = b"%d" % (time.time() + 2)
    c.send(P.SUBMIT_JOB_EPOCH, b"f", b"e1", due, b"soon", label="'f' 'e1' <now+2> 'soon'")
    c.recv(1)
    w.quiet()
    s.wait(2.5)
    w.quiet()
    w.send(P.GRAB_JOB_UNIQ)
    w.recv(1)




# The same script with gearmand's wake-up default made explicit: then both wake everyone.
SCENARIOS["wakeup_all_with_w0"] = Scenario(
    "wakeup_all_with_w0", wakeup_two_sleepers, ("--worker-wakeup=0",)
)
