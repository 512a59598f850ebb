"""Every admin text command's exact bytes, as gearadmin and monitoring scripts parse them
(gearmand's formats: lists end with ``.\\n``; ``OK``/``ERR`` end with ``\\r\\n``; ``OK value``
with ``\\n``)."""

from __future__ import annotations

import pytest

from gearshift.broker import Broker, Peer

from ._harness import P, admin, grab_handle, make_broker, submit, take, worker


def test_workers_lists_every_connection(broker: Broker, console: Peer) -> None:
    w = broker.connect("10.0.0.7", 5555, fd=12)
    broker.handle(w, P.SET_CLIENT_ID, b"w-one")
    broker.handle(w, P.CAN_DO, b"f")
    broker.handle(w, P.CAN_DO, b"g")
    assert admin(broker, console, b"workers") == (
        b"9 127.0.0.1 - :\n"
        b"12 10.0.0.7 w-one : g f\n"  # most recent registration first, as gearmand
        b".\n"
    )


def test_client_id_is_truncated_to_127_bytes(broker: Broker, console: Peer) -> None:
    broker.handle(console, P.SET_CLIENT_ID, b"x" * 300)
    assert admin(broker, console, b"workers") == b"9 127.0.0.1 " + b"x" * 127 + b" :\n.\n"


def test_status_counts_total_running_and_workers(broker: Broker, console: Peer) -> None:
    c = broker.connect()
    for _ in range(3):
        submit(broker, c, b"f")
    w = worker(broker, b"f")
    worker(broker, b"f")
    grab_handle(broker, w)
    assert admin(broker, console, b"status") == b"f\t3\t1\t2\n.\n"


def test_status_of_nothing_is_just_the_terminator(broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"status") == b".\n"


def test_prioritystatus_counts_queued_per_priority(broker: Broker, console: Peer) -> None:
    c = broker.connect()
    submit(broker, c, b"f", ptype=P.SUBMIT_JOB_HIGH)
    submit(broker, c, b"f", ptype=P.SUBMIT_JOB_LOW_BG)
    submit(broker, c, b"f", ptype=P.SUBMIT_JOB_LOW)
    submit(broker, c, b"f")
    w = worker(broker, b"f")
    grab_handle(broker, w)  # the high one: running, so no longer counted
    assert admin(broker, console, b"prioritystatus") == b"f\t0\t1\t2\t1\n.\n"


def test_show_jobs(broker: Broker, console: Peer) -> None:
    c = broker.connect()
    h1 = submit(broker, c, b"f", unique=b"u1")
    h2 = submit(broker, c, b"f")
    w1 = worker(broker, b"f")
    assert grab_handle(broker, w1) == h1
    broker.disconnect(w1)  # one retry
    w2 = worker(broker, b"f")
    assert grab_handle(broker, w2) == h2  # running: gearmand shows JOB_QUEUED 1 for it too
    assert admin(broker, console, b"show jobs") == (
        h1 + b"\t1\t0\t1\n" + h2 + b"\t0\t0\t1\n.\n"
    )


def test_show_unique_jobs(broker: Broker, console: Peer) -> None:
    c = broker.connect()
    submit(broker, c, b"f", unique=b"u1")
    submit(broker, c, b"f")
    assert admin(broker, console, b"show unique jobs") == b"u1\n\n.\n"


def test_show_with_unknown_arguments(broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"show me") == b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"


def test_cancel_job_fails_a_queued_job(broker: Broker, console: Peer) -> None:
    c = broker.connect()
    h = submit(broker, c, b"f")
    assert admin(broker, console, b"cancel job " + h) == b"OK\r\n"
    assert take(c) == [(P.WORK_FAIL, [h])]
    assert dict(broker.jobs.items()) == {}
    assert admin(broker, console, b"status") == b"f\t0\t0\t0\n.\n"


def test_cancel_job_refuses_unknown_jobs(broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"cancel job H:t:404") == b"ERR UNKNOWN_JOB\r\n"
    assert admin(broker, console, b"cancel job a b") == b"ERR UNKNOWN_ERROR\r\n"


def test_cancel_running_job_fails_clients_and_tells_a_gearshift_worker(
        broker: Broker, console: Peer) -> None:
    plain, aware = broker.connect(), broker.connect()
    broker.handle(aware, P.OPTION_REQ, b"exceptions")
    take(aware)
    h = submit(broker, plain, b"f", unique=b"u")
    assert submit(broker, aware, b"f", unique=b"u") == h  # coalesced: both wait on it
    w = worker(broker, b"f")
    broker.handle(w, P.OPTION_REQ, b"gearshift")
    take(w)
    assert grab_handle(broker, w) == h
    assert admin(broker, console, b"cancel job " + h) == b"OK\r\n"
    assert take(plain) == [(P.WORK_FAIL, [h])]
    assert take(aware) == [(P.WORK_EXCEPTION, [h, b"cancelled"])]
    assert take(w) == [(P.WORK_FAIL, [h])]  # a gearshift worker: "stop this job"
    assert h not in broker.jobs
    assert admin(broker, console, b"status") == b"f\t0\t0\t1\n.\n"
    # its late result is dropped without an ERROR; then it is an ordinary worker again
    broker.handle(w, P.WORK_COMPLETE, h, b"too late")
    assert take(w) == []
    broker.handle(w, P.WORK_COMPLETE, h, b"again")
    assert take(w)[0][0] == P.ERROR  # once the job ended, the handle is unknown again


def test_cancel_running_job_sends_a_third_party_worker_nothing(
        broker: Broker, console: Peer) -> None:
    c = broker.connect()
    h = submit(broker, c, b"f")
    w = worker(broker, b"f")
    grab_handle(broker, w)
    assert admin(broker, console, b"cancel job " + h) == b"OK\r\n"
    assert take(w) == []  # it never asked for extensions: no packet it does not know
    broker.handle(w, P.WORK_DATA, h, b"partial")
    broker.handle(w, P.WORK_FAIL, h)
    assert take(w) == []
    assert take(c) == [(P.WORK_FAIL, [h])]  # the client heard once, from the cancel


def test_create_and_drop_function(broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"create function made") == b"OK\r\n"
    assert admin(broker, console, b"status") == b"made\t0\t0\t0\n.\n"
    assert admin(broker, console, b"drop function MADE") == b"OK\r\n"  # case-insensitive
    assert admin(broker, console, b"status") == b".\n"
    assert admin(broker, console, b"drop function made") == b"ERR function not found\r\n"


def test_drop_function_refused_while_in_use(broker: Broker, console: Peer) -> None:
    w = worker(broker, b"busy")
    assert admin(broker, console, b"drop function busy") == (
        b"ERR there are still connected workers or executing clients\r\n")
    broker.disconnect(w)
    submit(broker, broker.connect(), b"busy", ptype=P.SUBMIT_JOB_BG)
    assert admin(broker, console, b"drop function busy") == (
        b"ERR there are still connected workers or executing clients\r\n")


@pytest.mark.parametrize("line", [b"create function", b"create thing x", b"drop function",
                                  b"maxqueue"])
def test_incomplete_arguments(broker: Broker, console: Peer, line: bytes) -> None:
    word = line.split()[0]
    assert admin(broker, console, line) == (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
        + word + b"\r\n")


def test_maxqueue_on_unknown_function_is_ok_and_creates_nothing(broker: Broker,
                                                                 console: Peer) -> None:
    assert admin(broker, console, b"maxqueue ghost 5") == b"OK\r\n"
    assert admin(broker, console, b"status") == b".\n"


def test_server_facts(broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"getpid") == b"OK 4242\n"
    assert admin(broker, console, b"verbose") == b"OK ERROR\n"
    assert admin(broker, console, b"version") == b"OK 9.9.9\n"
    assert admin(broker, console, b"VERSION") == b"OK 9.9.9\n"  # commands are case-blind


def test_unknown_command_and_empty_line(broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"frobnicate now") == (
        b"ERR UNKNOWN_COMMAND Unknown+server+commandfrobnicate\r\n")
    # gearmand answers blank lines too, with an empty command word.
    assert admin(broker, console, b"") == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    assert admin(broker, console, b"   ") == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"


def test_shutdown_is_unknown_unless_allowed(broker: Broker, console: Peer) -> None:
    assert admin(broker, console, b"shutdown") == (
        b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n")
    assert broker.shutdown_request is None


@pytest.mark.parametrize(("line", "kind"), [(b"shutdown", "now"),
                                               (b"shutdown graceful", "graceful")])
def test_shutdown_when_allowed(line: bytes, kind: str) -> None:
    broker = make_broker(allow_shutdown=True)
    console = broker.connect()
    assert admin(broker, console, line) == b"OK\r\n"
    assert broker.shutdown_request == kind


def test_shutdown_with_a_bad_argument() -> None:
    broker = make_broker(allow_shutdown=True)
    console = broker.connect()
    assert admin(broker, console, b"shutdown later").startswith(b"ERR INVALID_ARGUMENTS")
    assert broker.shutdown_request is None


def test_state_changing_commands_only_from_admin_from(broker: Broker, console: Peer) -> None:
    remote = broker.connect("192.0.2.7", 40001, fd=11)
    c = broker.connect()
    h = submit(broker, c, b"f")
    denied = admin(broker, remote, b"cancel job " + h)
    assert denied.startswith(b"ERR PERMISSION_DENIED ")
    assert admin(broker, remote, b"maxqueue f 1").startswith(b"ERR PERMISSION_DENIED ")
    assert admin(broker, remote, b"status") == b"f\t1\t0\t0\n.\n"  # reading stays open
    assert h in broker.jobs
    assert admin(broker, console, b"cancel job " + h) == b"OK\r\n"  # 127.0.0.1


def test_admin_from_networks() -> None:
    from gearshift.broker._access import AdminAccess, parse_admin_from

    access = AdminAccess(parse_admin_from("10.0.0.0/8, ::1"))
    assert access.allows("10.1.2.3")
    assert access.allows("::ffff:10.1.2.3")  # IPv4-mapped, as a dual-stack socket shows it
    assert not access.allows("127.0.0.1")  # the list replaces the loopback default
    assert access.allows("")  # a Unix socket
    assert AdminAccess(parse_admin_from("any")).allows("203.0.113.9")
    with pytest.raises(ValueError, match="not an address"):
        parse_admin_from("10.0.0.0/8,nonsense")
