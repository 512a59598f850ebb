"""Scenarios for the text admin protocol: listings, cancel, functions, maxqueue and the
small commands, byte for byte."""

from __future__ import annotations

from gearshift.protocol import PacketType

from ._script import scenario, submit, worker
from ._session import Session, mask_pid, mask_version

P = PacketType


# ------------------------------------------------------------------------- admin


@scenario()
def set_client_id_in_workers(s: Session) -> None:
    w1 = s.connect("w1")
    w1.send(P.SET_CLIENT_ID, b"worker-one")
    w1.send(P.CAN_DO, b"f")
    w1.send(P.CAN_DO, b"g")
    w1.sync()
    worker(s, "w2", b"f")
    w3 = s.connect("w3")
    w3.send(P.SET_CLIENT_ID, b"x" * 200)  # gearmand keeps at most 127 bytes
    w3.sync()
    admin = s.connect("admin")
    admin.admin(b"workers", True, sort=True)
    admin.admin(b"status", True, sort=True)


@scenario()
def admin_status_listings(s: Session) -> None:
    w = worker(s, "w1", b"f")
    c = s.connect("c1")
    submit(c, P.SUBMIT_JOB_HIGH_BG, b"f", b"a", b"")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"b", b"")
    submit(c, P.SUBMIT_JOB_LOW_BG, b"f", b"c", b"")
    submit(c, P.SUBMIT_JOB_LOW_BG, b"g", b"d", b"")
    w.send(P.GRAB_JOB)
    w.recv(1)
    w.sync()
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
    admin.admin(b"prioritystatus", True, sort=True)
    admin.admin(b"show jobs", True, sort=True)
    admin.admin(b"show unique jobs", True, sort=True)
    admin.admin(b"STATUS", True, sort=True)  # commands are case-insensitive


@scenario()
def admin_cancel_job(s: Session) -> None:
    c = s.connect("c1")
    h = submit(c, P.SUBMIT_JOB, b"f", b"u", b"x")
    admin = s.connect("admin")
    admin.admin(b"cancel job " + h)
    c.recv(1)
    admin.admin(b"cancel job " + h)  # still known (ignored): the client is failed again
    c.quiet()
    admin.admin(b"cancel job no-such-handle")
    admin.admin(b"cancel job")
    admin.admin(b"cancel job " + h + b" extra")
    c.quiet()
    admin.admin(b"show jobs", True, sort=True)
    w = worker(s, "w1", b"f")
    w.send(P.GRAB_JOB)
    w.recv(1)


@scenario()
def admin_create_drop_function(s: Session) -> None:
    admin = s.connect("admin")
    admin.admin(b"create function fresh")
    admin.admin(b"status", True, sort=True)
    admin.admin(b"drop function fresh")
    admin.admin(b"drop function fresh")
    admin.admin(b"create function")
    admin.admin(b"drop function")
    worker(s, "w1", b"busy")
    admin.admin(b"drop function busy")
    admin.admin(b"drop function BUSY")
    admin.admin(b"status", True, sort=True)


@scenario()
def admin_create_function_bare_newline(s: Session) -> None:
    """gearmand assumes CRLF when taking the name length, cutting a char on bare LF."""
    admin = s.connect("admin")
    admin.admin(b"create function fresh", eol=b"\n")
    admin.admin(b"status", True, sort=True, eol=b"\n")


@scenario()
def admin_maxqueue(s: Session) -> None:
    admin = s.connect("admin")
    c = s.connect("c1")
    admin.admin(b"maxqueue f 1")  # f does not exist yet: OK (gearmand ignores it, we keep it)
    submit(c, P.SUBMIT_JOB_BG, b"f", b"0", b"")
    admin.admin(b"maxqueue f 1")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"1", b"")
    c.send(P.SUBMIT_JOB_BG, b"f", b"2", b"")
    c.recv(1)
    submit(c, P.SUBMIT_JOB_BG, b"f", b"0", b"")  # coalesces onto the queued job
    admin.admin(b"create function g")
    admin.admin(b"maxqueue g 1 2 3")
    for ptype in (P.SUBMIT_JOB_HIGH_BG, P.SUBMIT_JOB_HIGH_BG, P.SUBMIT_JOB_BG,
                  P.SUBMIT_JOB_LOW_BG, P.SUBMIT_JOB_LOW_BG):
        c.send(ptype, b"g", b"", b"")
        c.recv(1)
    admin.admin(b"maxqueue f")
    submit(c, P.SUBMIT_JOB_BG, b"f", b"3", b"")  # 0 = unlimited again
    admin.admin(b"maxqueue")
    admin.admin(b"maxqueue unknown 5")
    admin.admin(b"status", True, sort=True)


@scenario()
def admin_misc_commands(s: Session) -> None:
    admin = s.connect("admin")
    admin.admin(b"getpid", mask=mask_pid)
    admin.admin(b"version", mask=mask_version)
    admin.admin(b"verbose")
    admin.admin(b"bogus command")
    admin.admin(b"show")
    admin.admin(b"show nothing")
    admin.admin(b"shutdown")
    admin.admin(b"workers", True, sort=True)
    admin.admin(b"", timeout=0.5)  # gearmand answers even an empty line
    admin.admin(b"  ", timeout=0.5)
    admin.admin(b"", eol=b"\n", timeout=0.5)
    admin.admin(b"STATUS extra words", True)
    admin.admin(b"maxqueue f 1 2")
    admin.admin(b"maxqueue f x")
    admin.admin(b"create function a b")
    admin.admin(b"show jobs extra")
    admin.admin(b"getpid extra", mask=mask_pid)
    admin.admin(b"verbose x")
    admin.admin(b"workers", True, eol=b"\n")


@scenario()
def admin_control_characters_in_names(s: Session) -> None:
    """A function name with a tab and newlines forges ``status`` rows on gearmand."""
    c = s.connect("c1")
    for name in (b"evil\t7\t7\t7\n.\nhidden", b"carriage\rreturn", b"back\\slash", b"plain"):
        submit(c, P.SUBMIT_JOB_BG, name, b"", b"")
    admin = s.connect("admin")
    admin.admin(b"status", True, sort=True)
