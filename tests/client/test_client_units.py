"""I/O-free parts: server lists, selection, backoff, codecs, the packet router, admin
reply parsing, the unasync generator (and that client/_sync has not drifted)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

import gearshift
from gearshift.client import Address, JobException, JobFailed, PayloadError, ServerError
from gearshift.client._models import EventKind, Priority, Task, TaskState
from gearshift.client._payload import get_codec, to_bytes
from gearshift.client._protocol import ClientProtocol
from gearshift.client._servers import Backoff, Selector, parse_address, parse_servers
from gearshift.protocol import PacketType as P
from gearshift.protocol import ProtocolError, encode_request
from gearshift.protocol._admin import (
    AdminReplyError,
    parse_err,
    parse_jobs,
    parse_ok,
    parse_priority_status,
    parse_status,
    parse_workers,
)

ROOT = Path(__file__).resolve().parents[2]


def load_unasync():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("unasync", ROOT / "scripts" / "unasync.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["unasync"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_sync_code_has_not_drifted() -> None:
    assert load_unasync().drift() == []


def test_unasync_rewrites_tokens() -> None:
    unasync = load_unasync()
    source = ("from collections.abc import AsyncIterator, Callable\n"
              "from gearshift.client._backends.asyncio_ import AsyncLock\n"
              "class AsyncClient:\n"
              "    async def __aenter__(self) -> Self:\n"
              "        async with x:\n"
              "            await self.aclose()\n")
    assert unasync.transform(source) == (
        "from collections.abc import Callable, Iterator\n"
        "from gearshift.client._backends.sync_ import Lock\n"
        "class Client:\n"
        "    def __enter__(self) -> Self:\n"
        "        with x:\n"
        "            self.close()\n")


@pytest.mark.parametrize(("spec", "expected"), [
    ("h", Address("h", 4730)), ("h:1", Address("h", 1)), (":7003", Address("localhost", 7003)),
    ("[::1]:99", Address("::1", 99)), ("[::1]", Address("::1", 4730)),
])
def test_parse_address(spec: str, expected: Address) -> None:
    assert parse_address(spec) == expected


@pytest.mark.parametrize("bad", ["", "h:x", "h:0", "h:70000", "[::1"])
def test_parse_address_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match=r"address|port"):
        parse_address(bad)


def test_parse_servers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEARMAN_SERVERS", "a:1, b")
    assert parse_servers() == [Address("a", 1), Address("b", 4730)]
    monkeypatch.delenv("GEARMAN_SERVERS")
    monkeypatch.setenv("GEARMAN_SERVER", "c:2")
    assert parse_servers() == [Address("c", 2)]
    monkeypatch.delenv("GEARMAN_SERVER")
    assert parse_servers() == [Address("localhost", 4730)]
    with pytest.raises(ValueError, match="empty"):
        parse_servers([])


def test_selector_hashes_unique_and_rotates_otherwise() -> None:
    selector = Selector(["a:4730", "b:4730", "c:4730"])
    assert selector.order(b"k") == selector.order(b"k")
    assert sorted(selector.order(b"k")) == [0, 1, 2]
    firsts = {selector.order(None)[0] for _ in range(3)}
    assert firsts == {0, 1, 2}
    assert Selector(["only:1"]).order(b"k") == [0]


KEYS = [f"job-{i}".encode() for i in range(2000)]


def _owners(servers: list[str]) -> dict[bytes, str]:
    selector = Selector(servers)
    return {k: servers[selector.order(k)[0]] for k in KEYS}


def test_consistent_hashing_moves_about_one_in_n_keys() -> None:
    four = [f"10.0.0.{i}:4730" for i in range(1, 5)]
    before = _owners(four)
    after = _owners([*four, "10.0.0.5:4730"])
    moved = [k for k in KEYS if before[k] != after[k]]
    # Every key that moved went to the new server; about 1/5 of them did (crc32 % n
    # would move about 4/5).
    assert {after[k] for k in moved} == {"10.0.0.5:4730"}
    assert 0.08 < len(moved) / len(KEYS) < 0.35
    # Removing a server moves only its own keys.
    three = _owners(four[:3])
    assert all(three[k] == before[k] for k in KEYS if before[k] != four[3])
    # Every server gets a share.
    assert set(before.values()) == set(four)


def test_ring_does_not_depend_on_list_order_and_fails_over_clockwise() -> None:
    servers = ["a:4730", "b:4730", "c:4730"]
    assert _owners(servers) == _owners(list(reversed(servers)))
    selector = Selector(servers)
    for key in KEYS[:50]:
        order = selector.order(key)
        assert sorted(order) == [0, 1, 2]
        # Without the first choice, the key goes to what was its second choice.
        rest = [servers[i] for i in order[1:]]
        smaller = Selector(rest)
        assert rest[smaller.order(key)[0]] == rest[0]


def test_ketama_points_match_the_reference_hash() -> None:
    """ketama: md5 of the key; the first 4 digest bytes little-endian are its point."""
    from uhashring import HashRing

    ring = HashRing(nodes=["a:4730"], hash_fn="ketama")
    digest = hashlib.md5(b"unique-1").digest()
    assert ring.hashi("unique-1") == int.from_bytes(digest[:4], "little")
    # A server listed twice still works (distinct ring names).
    assert sorted(Selector(["a:4730", "a:4730"]).order(b"k")) == [0, 1]


def test_backoff_grows_and_resets() -> None:
    backoff = Backoff(initial=0.1, cap=1.0)
    delays = [backoff.failed(100.0) for _ in range(8)]
    assert delays[0] <= 0.1
    assert max(delays) <= 1.0
    assert delays[5] > delays[0]
    assert backoff.is_down(100.0)
    backoff.succeeded()
    assert not backoff.is_down(100.0)


def test_codecs() -> None:
    json = get_codec("json")
    assert json.decode(json.encode({"a": [1, 2]})) == {"a": [1, 2]}
    with pytest.raises(PayloadError):
        json.decode(b"{not json")
    with pytest.raises(PayloadError):
        json.encode(object())
    with pytest.raises(ValueError, match="unknown codec"):
        get_codec("pickle")
    assert to_bytes("é") == "é".encode()
    assert to_bytes(None) == b""
    with pytest.raises(TypeError, match="codec"):
        to_bytes(3)


def test_router_fifo_replies_and_work_packets() -> None:
    proto = ClientProtocol()
    fg = Task(b"f", b"d", b"")
    bg = Task(b"f", b"d", b"u", background=True, priority=Priority.HIGH)
    assert proto.submit(fg) == encode_request(P.SUBMIT_JOB, b"f", b"", b"d")
    assert proto.submit(bg) == encode_request(P.SUBMIT_JOB_HIGH_BG, b"f", b"u", b"d")
    _, reply = proto.request(P.GET_STATUS, P.STATUS_RES, b"H:1")
    proto.receive((P.JOB_CREATED, [b"H:1"]))
    proto.receive((P.JOB_CREATED, [b"H:2"]))
    proto.receive((P.STATUS_RES, [b"H:1", b"1", b"1", b"0", b"0"]))
    assert bg.done
    assert bg.result == b"H:2"
    assert reply.value()[1] == b"1"
    proto.receive((P.WORK_STATUS, [b"H:1", b"1", b"4"]))
    proto.receive((P.WORK_DATA, [b"H:1", b"x"]))
    assert [e.kind for e in fg.events] == [EventKind.STATUS, EventKind.DATA]
    assert (fg.numerator, fg.denominator) == (1, 4)
    proto.receive((P.WORK_FAIL, [b"H:1\0"]))  # converted WORK_EXCEPTION keeps a NUL
    assert isinstance(fg.error, JobFailed)
    assert not isinstance(fg.error, JobException)
    assert proto.waiting == 0


def test_router_error_and_connection_loss() -> None:
    proto = ClientProtocol()
    refused, pending, running = Task(b"f", b"", b""), Task(b"f", b"", b""), Task(b"f", b"", b"")
    proto.submit(running)
    proto.receive((P.JOB_CREATED, [b"H:9"]))
    proto.submit(refused)
    proto.submit(pending)
    proto.receive((P.ERROR, [b"QUEUE_ERROR", b"Job queue is full"]))
    assert isinstance(refused.error, ServerError)
    assert refused.error.code == b"QUEUE_ERROR"
    assert proto.connection_lost() == [pending]
    assert pending.state is TaskState.NEW
    assert isinstance(running.error, ConnectionError)
    with pytest.raises(ProtocolError):
        proto.receive((P.JOB_CREATED, [b"H:x"]))  # nobody asked


def test_task_validation() -> None:
    with pytest.raises(ValueError, match="EPOCH"):
        Task(b"f", b"", b"", when=5)
    with pytest.raises(ValueError, match="reduce"):
        Task(b"f", b"", b"", reducer=b"r", priority=Priority.HIGH)
    epoch = Task(b"f", b"d", b"u", background=True, when=1700000000)
    assert epoch.packet == (P.SUBMIT_JOB_EPOCH, (b"f", b"u", b"1700000000", b"d"))
    reduce = Task(b"f", b"d", b"u", reducer=b"r")
    assert reduce.packet == (P.SUBMIT_REDUCE_JOB, (b"f", b"u", b"r", b"", b"d"))


def test_admin_reply_parsing() -> None:
    assert parse_status([b"f\t3\t1\t2"])[0].total == 3
    assert parse_priority_status([b"f\t1\t2\t3\t4"])[0].low == 3
    (worker,) = parse_workers([b"12 ::1 my id : a b"])
    assert (worker.fd, worker.ip, worker.client_id, worker.functions) == (12, "::1", "my id",
                                                                          ("a", "b"))
    assert parse_workers([b"3 127.0.0.1 - :"])[0].functions == ()
    assert parse_jobs([b"H:x:1\t0\t1\t0"])[0].ignored
    err = parse_err(b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo")
    assert err is not None
    assert (err.code, err.text) == ("UNKNOWN_COMMAND", "Unknown server commandfoo")
    assert parse_err(b"OK") is None
    assert parse_ok(b"OK 1.1.20") == "1.1.20"
    assert parse_ok(b"OK") == ""
    for bad in ([b"f\t1"], [b"f\tx\t1\t1"]):
        with pytest.raises(AdminReplyError):
            parse_status(bad)
    with pytest.raises(AdminReplyError):
        parse_workers([b"no colon here"])
    with pytest.raises(AdminReplyError):
        parse_ok(b"ERR x")


def test_public_exports() -> None:
    names = ["AdminClient", "AsyncAdminClient", "AsyncClient", "AsyncWorker", "Client",
             "Worker", "GearmanError", "JobFailed", "JobException", "Priority"]
    for name in names:
        assert name in gearshift.__all__
        assert getattr(gearshift, name) is not None
    assert gearshift.__all__ == sorted(gearshift.__all__)


def test_msgpack_codec_round_trips_or_explains() -> None:
    try:
        import msgpack  # noqa: F401
    except ImportError:
        with pytest.raises(PayloadError, match="pip install"):
            get_codec("msgpack")
        return
    codec = get_codec("msgpack")
    assert codec.decode(codec.encode({"k": [1, b"x"]})) == {"k": [1, b"x"]}
