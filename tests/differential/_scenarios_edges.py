"""Scenarios at the edges: rejected and malformed input, framing (pipelining, single-byte
writes, mixed text and binary, 1 MiB bodies) and less common paths."""

from __future__ import annotations

import time

from gearshift.protocol import PacketType, encode_request

from ._script import handle_of, scenario, submit, worker
from ._session import SILENCE, Session

P = PacketType


# -------------------------------------------------------------- rejected input


@scenario()
def rejected_packets(s: Session) -> None:
    c = s.connect("c1")
    c.send(P.ALL_YOURS)
    c.recv(1)
    c.send(P.UNUSED)
    c.recv(1)
    c.send(P.ECHO_REQ, b"still open")
    c.recv(1)


@scenario()
def submit_job_sched(s: Session) -> None:
    """SUBMIT_JOB_SCHED (a job at 00:00 on January 1st, a Monday): gearmand rejects it,
    gearshift keeps a schedule."""
    c = s.connect("c1")
    c.send(P.SUBMIT_JOB_SCHED, b"f", b"u", b"0", b"0", b"1", b"1", b"0", b"data")
    c.recv(1)
    c.send(P.ECHO_REQ, b"still open")
    c.recv(1)


@scenario()
def server_only_packets(s: Session) -> None:
    """Packet types only a server sends, arriving as requests."""
    c = s.connect("c1")
    for ptype, fields in (
        (P.NOOP, ()), (P.JOB_CREATED, (b"h",)), (P.NO_JOB, ()),
        (P.JOB_ASSIGN, (b"h", b"f", b"d")), (P.ECHO_RES, (b"e",)),
        (P.ERROR, (b"CODE", b"text")), (P.STATUS_RES, (b"h", b"1", b"0", b"0", b"0")),
        (P.OPTION_RES, (b"exceptions",)), (P.JOB_ASSIGN_UNIQ, (b"h", b"f", b"u", b"d")),
        (P.JOB_ASSIGN_ALL, (b"h", b"f", b"u", b"r", b"d")),
        (P.STATUS_RES_UNIQUE, (b"u", b"1", b"0", b"0", b"0", b"0")),
    ):
        c.send(ptype, *fields)
        c.recv(1, timeout=SILENCE)
    c.send(P.ECHO_REQ, b"still open?")
    c.recv(1, timeout=SILENCE)


@scenario()
def can_do_duplicates(s: Session) -> None:
    """Registrations are not de-duplicated; CANT_DO removes them all."""
    w = worker(s, "w1", b"f", b"f", b"g")
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    admin.admin(b"workers", True, sort=True)
    w.send(P.CANT_DO, b"f")
    w.send(P.CANT_DO, b"never-registered")
    w.sync()
    admin.admin(b"status", True, sort=True)
    admin.admin(b"workers", True, sort=True)


@scenario()
def work_for_unknown_handle(s: Session) -> None:
    w = worker(s, "w1", b"f")
    for ptype, extra in (
        (P.WORK_COMPLETE, (b"r",)), (P.WORK_FAIL, ()), (P.WORK_EXCEPTION, (b"e",)),
        (P.WORK_DATA, (b"d",)), (P.WORK_WARNING, (b"w",)), (P.WORK_STATUS, (b"1", b"2")),
    ):
        w.send(ptype, b"no-such-handle", *extra)
        w.recv(1)
    # A job queued but assigned to nobody is not this worker's either.
    c = s.connect("c1")
    h = submit(c, P.SUBMIT_JOB, b"f", b"", b"x")
    w.send(P.WORK_COMPLETE, h, b"r")
    w.recv(1)
    c.quiet()


@scenario()
def request_with_response_magic(s: Session) -> None:
    c = s.connect("c1")
    c.send_raw(b"\0RES" + (16).to_bytes(4, "big") + (2).to_bytes(4, "big") + b"hi",
               "ECHO_REQ with \\0RES magic")
    c.recv(1)
    c.quiet()
    c.send(P.ECHO_REQ, b"still open?")
    c.recv(1, timeout=SILENCE)




# ------------------------------------------------------------------ framing / streams


@scenario()
def pipelined_and_fragmented(s: Session) -> None:
    """Many packets in one write; one packet split into single bytes; both still parse."""
    c = s.connect("c1")
    c.send_raw(b"".join(encode_request(P.ECHO_REQ, b"%d" % i) for i in range(50)),
               "50 x ECHO_REQ in one write")
    c.recv(50)
    w = worker(s, "w1", b"f")
    packet = encode_request(P.SUBMIT_JOB, b"f", b"u", b"split")
    c.note_send(f"SUBMIT_JOB 'f' 'u' 'split' one byte per write ({len(packet)} writes)")
    for i in range(len(packet)):
        c.sock.sendall(packet[i : i + 1])
        time.sleep(0.001)
    c.recv(1)
    w.send(P.GRAB_JOB)
    w.recv(1)


@scenario()
def mixed_text_and_binary(s: Session) -> None:
    """One connection may interleave admin lines and binary packets."""
    c = s.connect("c1")
    c.send_raw(encode_request(P.ECHO_REQ, b"one") + b"verbose\r\n"
               + encode_request(P.ECHO_REQ, b"two") + b"status\r\nprioritystatus\n"
               + encode_request(P.ECHO_REQ, b"three"),
               "ECHO_REQ 'one' + verbose + ECHO_REQ 'two' + status + prioritystatus"
               " + ECHO_REQ 'three'")
    c.read_raw(b"three")


# ------------------------------------------------------------------ less common paths


@scenario()
def grab_without_can_do(s: Session) -> None:
    w = s.connect("w1")
    for ptype in (P.GRAB_JOB, P.GRAB_JOB_UNIQ, P.GRAB_JOB_ALL):
        w.send(ptype)
        w.recv(1)
    w.send(P.PRE_SLEEP)
    w.quiet()
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"", b"")
    w.quiet()


@scenario()
def other_worker_reports(s: Session) -> None:
    """WORK_* for a job assigned to a *different* worker."""
    w1 = worker(s, "w1", b"f")
    w2 = worker(s, "w2", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    w1.send(P.GRAB_JOB)
    h = handle_of(w1.recv(1))
    w2.send(P.WORK_STATUS, h, b"1", b"2")
    w2.recv(1, timeout=SILENCE)
    w2.send(P.WORK_COMPLETE, h, b"not mine")
    w2.recv(1, timeout=SILENCE)
    c.quiet()
    w1.send(P.WORK_COMPLETE, h, b"mine")
    c.recv(1)


@scenario()
def client_leaves_running_job(s: Session) -> None:
    """The job finishes normally with nobody to tell; its handle is then unknown."""
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    h = submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    w.send(P.GRAB_JOB)
    w.recv(1)
    c.close()
    s.wait(0.2)
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    w.send(P.WORK_DATA, h, b"d")
    w.send(P.WORK_COMPLETE, h, b"r")
    w.sync()
    admin.admin(b"status", True, sort=True)
    c2 = s.connect("c2")
    c2.send(P.GET_STATUS, h)
    c2.recv(1)


@scenario()
def foreground_joins_background_then_leaves(s: Session) -> None:
    """A foreground client coalesces onto a background job and disconnects."""
    c_bg, c_fg = s.connect("bg"), s.connect("fg")
    submit(c_bg, P.SUBMIT_JOB_BG, b"f", b"shared", b"x")
    submit(c_fg, P.SUBMIT_JOB, b"f", b"shared", b"x")
    c_fg.close()
    s.wait(0.2)
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    w = worker(s, "w1", b"f")
    w.send(P.GRAB_JOB)
    w.recv(1)


@scenario("--exceptions")
def server_wide_exceptions(s: Session) -> None:
    """--exceptions: every client gets WORK_EXCEPTION without asking."""
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB, b"f", b"", b"x")
    w.send(P.GRAB_JOB)
    h = handle_of(w.recv(1))
    w.send(P.WORK_EXCEPTION, h, b"boom")
    c.recv(1)


@scenario()
def odd_names(s: Session) -> None:
    """Empty function names and binary bytes in names and uniques (control bytes are
    escaped in admin listings: ``admin_control_characters_in_names``)."""
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_BG, b"", b"u", b"x")
    submit(c, P.SUBMIT_JOB_BG, b"f\x80\xff", b"\xfe", b"x")
    w = worker(s, "w1", b"")
    w.send(P.GRAB_JOB_UNIQ)
    w.recv(1)
    w.send(P.CAN_DO, b"f\x80\xff")  # one function at a time: the order is not under test
    w.send(P.GRAB_JOB_UNIQ)
    w.recv(1)
    w.send(P.GRAB_JOB_UNIQ)
    w.recv(1)
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)


@scenario()
def large_payloads(s: Session) -> None:
    """1 MiB bodies through ECHO and through a job, data and result (checked, not printed)."""
    big = bytes(range(256)) * 4096
    c = s.connect("c1")
    c.send(P.ECHO_REQ, big, label="<1 MiB of bytes 0..255>")
    echoed = c.recv_unnoted(1)
    s.note(f"check: echo intact = {bool(echoed) and echoed[0][1] == [big]}")
    w = worker(s, "w1", b"f")
    c.send(P.SUBMIT_JOB, b"f", b"u", big, label="'f' 'u' <1 MiB>")
    c.recv(1)
    w.send(P.GRAB_JOB_UNIQ)
    assigned = w.recv_unnoted(1)
    s.note(f"check: assigned data intact = {bool(assigned) and assigned[0][1][3:] == [big]}")
    w.send(P.WORK_COMPLETE, handle_of(assigned), big[::-1], label="H1 <1 MiB reversed>")
    done = c.recv_unnoted(1)
    s.note(f"check: result intact = {bool(done) and done[0][1][1:] == [big[::-1]]}")


@scenario()
def drop_function_with_queued_jobs(s: Session) -> None:
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"u", b"x")
    admin = s.connect("admin")
    admin.admin(b"drop function f")
    admin.admin(b"status", True, sort=True)
    w = worker(s, "w1", b"f")
    w.send(P.GRAB_JOB)
    w.recv(1)


@scenario()
def malformed_numbers(s: Session) -> None:
    """Non-numeric epoch and timeout fields (gearmand documents a dropped connection)."""
    c = s.connect("c1")
    c.send(P.SUBMIT_JOB_EPOCH, b"f", b"u", b"soon", b"x")
    c.recv(1, timeout=SILENCE)
    c.send(P.ECHO_REQ, b"still open?")
    c.recv(1, timeout=SILENCE)
    w = s.connect("w1")
    w.send(P.CAN_DO_TIMEOUT, b"f", b"later")
    w.send(P.ECHO_REQ, b"still open?")
    w.recv(1, timeout=SILENCE)


# ------------------------------------------- malformed input (documented differences)


@scenario()
def unknown_packet_type(s: Session) -> None:
    c = s.connect("c1")
    c.send_raw(b"\0REQ" + (43).to_bytes(4, "big") + (0).to_bytes(4, "big"), "type 43")
    c.quiet()


@scenario()
def packet_type_zero(s: Session) -> None:
    c = s.connect("c1")
    c.send_raw(b"\0REQ" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big"), "type 0")
    c.quiet()


@scenario()
def unknown_magic(s: Session) -> None:
    c = s.connect("c1")
    c.send_raw(b"\0ABC" + (16).to_bytes(4, "big") + (0).to_bytes(4, "big"),
               "ECHO_REQ with \\0ABC magic")
    c.quiet()


@scenario()
def wrong_field_count(s: Session) -> None:
    """Too few NULs, with the next packet in the same write: gearmand reads that
    packet's bytes as the missing fields and drops the connection; gearshift drops it
    at once. Neither answers."""
    c = s.connect("c1")
    c.send_raw(b"\0REQ" + (7).to_bytes(4, "big") + (3).to_bytes(4, "big") + b"f\0u"
               + encode_request(P.ECHO_REQ, b"still open?"),
               "SUBMIT_JOB with 2 fields, ECHO_REQ")
    c.recv(1, timeout=SILENCE)


@scenario()
def bare_handle_work_complete(s: Session) -> None:
    """Perl's Gearman::Worker sends WORK_COMPLETE with an empty (or "0") result as the
    bare handle, no NUL, then its next GRAB_JOB: the worker is dropped without a reply,
    the client hears nothing and the job is queued again (written in one piece, so
    gearmand has the next packet's bytes to read the missing NUL from)."""
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    handle = submit(c, P.SUBMIT_JOB, b"f", b"", b"data")
    w.send(P.GRAB_JOB)
    w.recv(1)
    w.send_raw(b"\0REQ" + (13).to_bytes(4, "big") + len(handle).to_bytes(4, "big") + handle
               + encode_request(P.GRAB_JOB), "WORK_COMPLETE with the bare handle, GRAB_JOB")
    w.recv(1, timeout=SILENCE)
    c.quiet()
    s.connect("a").admin(b"status", listing=True)


@scenario()
def oversized_body(s: Session) -> None:
    c = s.connect("c1")
    c.send_raw(b"\0REQ" + (16).to_bytes(4, "big") + (100 << 20).to_bytes(4, "big"),
               "ECHO_REQ header declaring 100 MiB")
    c.quiet()
