"""Long admin listings (``show jobs``, ``show unique jobs``, ``status``,
``prioritystatus``, ``workers``, ``dead``) are produced a bounded piece at a time
(broker/_listing.py): the bytes are those of the one-piece reply, each piece is about
``ADMIN_BATCH_BYTES``, what the peer sends meanwhile waits behind the listing, and the
broker may change between pieces."""

from __future__ import annotations

import json

import pytest

from gearshift.broker import Broker, Peer
from gearshift.broker._admin import escape
from gearshift.broker._broker import BATCH_PACKETS
from gearshift.broker._core import ADMIN_BATCH_BYTES
from gearshift.broker._model import PENDING
from gearshift.broker._outcomes import Outcome
from gearshift.protocol import RES, PacketReader, PacketType

from ._harness import P, admin, grab_handle, submit, take, worker

# ------------------------------------------------------------- the one-piece replies
# What the admin commands built before listings were produced in pieces (the same
# expressions, over the whole state at once).


def old_workers(broker: Broker) -> bytes:
    lines = []
    for peer in broker.peers.values():
        funcs = b"".join(b" " + escape(f.name) for f in reversed(peer.functions))
        lines.append(b"%d %s %s :%s\n" % (peer.fd, peer.host.encode(),
                                           escape(peer.client_id), funcs))
    return b"".join(lines) + b".\n"


def old_status(broker: Broker) -> bytes:
    return b"".join(b"%s\t%d\t%d\t%d\n" % (escape(f.name), f.total, f.running, len(f.workers))
                    for f in broker.functions.values()) + b".\n"


def old_priority_status(broker: Broker) -> bytes:
    return b"".join(b"%s\t%d\t%d\t%d\t%d\n" % (escape(f.name), f.queued[0],
                                               f.queued[1] + f.scheduled, f.queued[2],
                                               len(f.workers))
                    for f in broker.functions.values()) + b".\n"


def old_show_jobs(broker: Broker) -> bytes:
    return b"".join(b"%s\t%d\t0\t%d\n" % (escape(j.handle), j.retries,
                                          0 if j.state == PENDING else 1)
                    for j in list(broker.jobs.values())) + b".\n"


def old_show_unique_jobs(broker: Broker) -> bytes:
    return b"".join(escape(j.unique) + b"\n" for j in list(broker.jobs.values())) + b".\n"


OLD = {b"workers": old_workers, b"status": old_status,
       b"prioritystatus": old_priority_status, b"show jobs": old_show_jobs,
       b"show unique jobs": old_show_unique_jobs}


def populate(broker: Broker, jobs: int, functions: int = 3) -> None:
    """Jobs of several functions, priorities and uniques (some with bytes to escape),
    replayed ones, running ones, workers with client ids."""
    c = broker.connect("10.0.0.1", 1, fd=11)
    kinds = (P.SUBMIT_JOB_BG, P.SUBMIT_JOB_HIGH_BG, P.SUBMIT_JOB_LOW_BG)
    for i in range(jobs):
        name = b"f%d" % (i % functions) if i % 7 else b"tab\tname\n."
        submit(broker, c, name, b"x", b"u-%d\\%d" % (i, i) if i % 2 else b"",
               ptype=kinds[i % 3])
    broker.restore(b"H:old:1", b"f0", b"old-unique", b"data", 1)
    broker.restore(b"H:old:2", b"f1", b"", b"data", 0)
    w = worker(broker, b"f0", b"f1")
    broker.handle(w, P.SET_CLIENT_ID, b"worker\x01one")
    grab_handle(broker, w)


@pytest.mark.parametrize("line", list(OLD))
@pytest.mark.parametrize("jobs", [0, 10, 12000])
def test_listings_are_the_one_piece_reply(broker: Broker, console: Peer, line: bytes,
                                          jobs: int) -> None:
    if jobs:
        populate(broker, jobs, functions=jobs // 4)
    expected = OLD[line](broker)
    got = admin(broker, console, line)
    assert got == expected
    if jobs == 12000 and line.startswith(b"show"):
        assert len(got) > ADMIN_BATCH_BYTES  # several pieces were put together


def test_a_small_listing_is_one_piece_and_stops_nothing(broker: Broker,
                                                        console: Peer) -> None:
    populate(broker, 10)
    broker.handle(console, P.TEXT, b"show jobs")
    assert console.listing is None
    assert console.backlog is None
    assert broker.stalled == []


def test_a_long_listing_comes_a_piece_per_resume_and_later_packets_wait(
        broker: Broker, console: Peer) -> None:
    populate(broker, 20000, functions=2)
    expected = old_show_jobs(broker)
    broker.handle_packets(console, [(0, [b"show jobs"]), (int(PacketType.ECHO_REQ), [b"after"])])
    first = console.take_output()
    assert ADMIN_BATCH_BYTES <= len(first) < ADMIN_BATCH_BYTES + 100
    assert first.endswith(b"\n")  # whole rows
    assert console.listing is not None
    assert broker.stalled == [console]
    assert console.backlog == [(int(PacketType.ECHO_REQ), [b"after"])]
    # A read arriving meanwhile waits too.
    broker.handle_packets(console, [(int(PacketType.ECHO_REQ), [b"later"])])
    assert console.out == []
    pieces = [first]
    while console.listing is not None:
        broker.stalled.clear()
        broker.resume(console)
        piece = console.take_output()
        if console.listing is not None:
            assert ADMIN_BATCH_BYTES <= len(piece) < ADMIN_BATCH_BYTES + 100
            assert broker.stalled == [console]
        pieces.append(piece)
    listing = b"".join(pieces)
    assert listing.startswith(expected)
    # After the listing, the waiting packets were acted on, in order.
    assert console.backlog is None
    echoes = PacketReader(expect=RES, allow_text=False).feed(listing[len(expected):])
    assert echoes == [(PacketType.ECHO_RES, [b"after"]), (PacketType.ECHO_RES, [b"later"])]


def test_the_broker_may_change_between_pieces(broker: Broker, console: Peer) -> None:
    c = broker.connect()
    handles = [submit(broker, c, b"f", b"x%d" % i, ptype=P.SUBMIT_JOB_BG)
               for i in range(20000)]
    broker.restore(b"H:old:1", b"f", b"", b"data", 1)
    broker.restore(b"H:old:2", b"f", b"", b"data", 1)
    w = worker(broker, b"f")
    broker.handle(console, P.TEXT, b"show jobs")
    first = console.take_output()
    assert console.listing is not None
    assert first.startswith(b"H:old:1\t0\t0\t1\nH:old:2\t")  # replayed jobs come first
    # Between pieces: a job starts running, the replayed jobs (listed already) and the
    # last 1,500 jobs (not yet listed: whole pages emptied) end, and new jobs arrive,
    # some on pages that did not exist when the listing began.
    broker.handle(w, P.GRAB_JOB)
    take(w)
    for handle in [b"H:old:1", b"H:old:2", *handles[-1500:]]:
        assert broker.cancel(handle)
    new = [submit(broker, c, b"f", b"n%d" % i, ptype=P.SUBMIT_JOB_BG) for i in range(3000)]
    rest = b""
    while console.listing is not None:
        broker.resume(console)
        rest += console.take_output()
    rows = (first + rest).split(b"\n")
    assert rows[-2:] == [b".", b""]
    listed = [row.split(b"\t")[0] for row in rows[:-2]]
    # Each job once, as it was when its row was made: ended before -> not listed, new
    # since -> not listed.
    assert listed == [b"H:old:1", b"H:old:2", *handles[:-1500]]
    assert not set(new) & set(listed)


def test_status_while_functions_come_and_go(broker: Broker, console: Peer) -> None:
    c = broker.connect()
    for i in range(6000):
        broker.handle(c, P.SUBMIT_JOB_BG, b"func-%05d" % i, b"", b"x")
    take(c)
    broker.handle(console, P.TEXT, b"status")
    first = console.take_output()
    assert console.listing is not None
    del broker.functions[b"func-05999"]  # as `drop function` does
    broker.handle(c, P.SUBMIT_JOB_BG, b"newcomer", b"", b"x")
    rest = b""
    while console.listing is not None:
        broker.resume(console)
        rest += console.take_output()
    names = [row.split(b"\t")[0] for row in (first + rest).split(b"\n")[:-2]]
    assert names == [b"func-%05d" % i for i in range(5999)]


def test_dead_letters_are_listed_in_pieces_and_may_be_purged_meanwhile(
        broker: Broker, console: Peer) -> None:
    for i in range(400):
        broker.restore_outcome(Outcome(b"H:dead:%d" % i, b"f%d" % (i % 2), b"", "failed",
                                       b"reason", 1, 1.0, 2.0, 3.0, True, b"p" * 300))
    whole = admin(broker, console, b"dead f1")
    records = [json.loads(row) for row in whole.split(b"\n")[:-2]]
    assert [r["handle"] for r in records] == [f"H:dead:{i}" for i in range(1, 400, 2)]
    broker.handle(console, P.TEXT, b"dead")
    first = console.take_output()
    assert console.listing is not None
    seen = len(first.split(b"\n")) - 1
    broker.purge_dead(b"H:dead:399")
    rest = b""
    while console.listing is not None:
        broker.resume(console)
        rest += console.take_output()
    handles = [json.loads(row)["handle"] for row in (first + rest).split(b"\n")[:-2]]
    assert handles == [f"H:dead:{i}" for i in range(399)]
    assert seen < 399


def test_a_peer_that_leaves_mid_listing_is_forgotten(broker: Broker, console: Peer) -> None:
    populate(broker, 20000)
    broker.handle(console, P.TEXT, b"show unique jobs")
    assert console.listing is not None
    broker.disconnect(console)
    broker.resume(console)
    assert console.listing is None
    assert console.out == [] or console.closed


def test_a_huge_read_is_acted_on_a_batch_at_a_time(broker: Broker, console: Peer) -> None:
    """More than BATCH_PACKETS packets in one read (what the server's data_received
    hands over): the first batch now, the rest per resume, in order, admin lines
    included."""
    echo = int(PacketType.ECHO_REQ)
    packets = [(echo, [b"%d" % i]) for i in range(BATCH_PACKETS * 3 + 10)]
    packets.insert(BATCH_PACKETS + 5, (0, [b"version"]))
    broker.handle_first(console, packets)
    first = PacketReader(expect=RES, allow_text=False).feed(console.take_output())
    assert [f[0] for _, f in first] == [b"%d" % i for i in range(BATCH_PACKETS)]
    assert broker.stalled == [console]
    assert console.backlog is not None
    assert len(console.backlog) == len(packets) - BATCH_PACKETS
    out = b""
    steps = 0
    while console.backlog is not None:
        broker.stalled.clear()
        broker.resume(console)
        out += console.take_output()
        steps += 1
    assert steps == 3
    text_at = out.index(b"OK ")
    before = PacketReader(expect=RES, allow_text=False).feed(out[:text_at])
    line_end = out.index(b"\n", text_at) + 1
    after = PacketReader(expect=RES, allow_text=False).feed(out[line_end:])
    assert [f[0] for _, f in before + after] == \
        [b"%d" % i for i in range(BATCH_PACKETS, BATCH_PACKETS * 3 + 10)]
    assert len(before) == 5  # the version line answered in its place
