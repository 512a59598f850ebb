"""gearmand's HTTP protocol, answer for answer: the same requests go to a real gearmand
started with ``-r http`` and to gearshift, each with a real worker, and the answers
that matter -- status and reason, ``X-Gearman-Job-Handle`` (handles normalised to the
order they first appear), ``X-Gearman-Command``, ``Content-Length`` and the body -- must
be equal. Deliberate differences (HTTP/1.1 keep-alive, the Server header, a WORK_FAIL's
handle) are in docs/compatibility.md and are not compared."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest

from gearshift.testing import GearmandServer, ServerProcess, free_port, gearmand_path

from .conftest import HttpServer, working


def _fail(job: object) -> bytes:
    raise RuntimeError("no")


HANDLERS = {"rev": lambda job: job.data[::-1], "fail": _fail, "empty": lambda job: b""}

BG = "X-Gearman-Background: true\r\n"

#: (name, request) in the order they run; each gets its own connection.
SCENARIOS: list[tuple[str, bytes]] = [
    ("sync", b"POST /rev HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
    ("sync, HTTP/1.0", b"POST /rev HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"),
    ("background", f"POST /rev HTTP/1.1\r\nContent-Length: 5\r\n{BG}\r\nhello".encode()),
    ("unique", b"POST /rev HTTP/1.1\r\nContent-Length: 3\r\nX-Gearman-Unique: u1\r\n\r\nabc"),
    ("high", b"POST /rev HTTP/1.1\r\nContent-Length: 3\r\nX-Gearman-Priority: high\r\n\r\nabc"),
    ("low, background", b"POST /rev HTTP/1.1\r\nContent-Length: 3\r\nX-Gearman-Priority: low"
                        b"\r\n" + BG.encode() + b"\r\nabc"),
    ("failing", b"POST /fail HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    ("empty result", b"POST /empty HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    ("PUT", b"PUT /rev HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    ("GET: empty workload", b"GET /rev HTTP/1.1\r\n\r\n"),
    ("no function", b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
    ("unknown function, background",
     f"POST /nobody HTTP/1.1\r\nContent-Length: 3\r\n{BG}\r\nabc".encode()),
    ("same unique coalesces", f"POST /nobody HTTP/1.1\r\nContent-Length: 3\r\n{BG}"
                              "X-Gearman-Unique: k\r\n\r\nxyz".encode()),
    ("same unique again", f"POST /nobody HTTP/1.1\r\nContent-Length: 3\r\n{BG}"
                          "X-Gearman-Unique: k\r\n\r\nzzz".encode()),
    ("default unique '-': same body coalesces",
     f"POST /nobody HTTP/1.1\r\nContent-Length: 3\r\n{BG}\r\nabc".encode()),
    ("empty unique header means '-'", f"POST /nobody HTTP/1.1\r\nContent-Length: 3\r\n{BG}"
                                      "X-Gearman-Unique: \r\n\r\nabc".encode()),
    ("background: TRUE", b"POST /nobody HTTP/1.1\r\nContent-Length: 3\r\n"
                         b"x-gearman-background: TRUE\r\n\r\nnew"),
    ("unique too long", b"POST /nobody HTTP/1.1\r\nContent-Length: 3\r\nX-Gearman-Unique: "
                        + b"u" * 100 + b"\r\n\r\nabc"),
    ("query string is part of the name",
     f"POST /nobody?x=1 HTTP/1.1\r\nContent-Length: 3\r\n{BG}\r\nabc".encode()),
    ("HEAD, background", f"HEAD /nobody HTTP/1.1\r\n{BG}\r\n".encode()),
    ("unknown function, foreground: waits",
     b"POST /nobody HTTP/1.1\r\nContent-Length: 4\r\n\r\nwait"),
]

# Every HTTP/1.1 client sends Host (RFC 9112 requires it; gearshift answers 400 without
# it, gearmand does not look): added where a scenario has none.
SCENARIOS = [(name, request if b"\r\nHost:" in request
              else request.replace(b" HTTP/1.1\r\n", b" HTTP/1.1\r\nHost: x\r\n", 1))
             for name, request in SCENARIOS]

#: Seconds a request that should wait is given before it counts as waiting.
WAIT = 1.0


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request``; the reply's head and Content-Length bytes of body, or
    ``<waiting>`` when nothing came within WAIT seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.settimeout(WAIT)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return data
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            while length and len(body) < int(length.group(1)) and not request.startswith(b"HEAD"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return head + b"\r\n\r\n" + body
        except TimeoutError:
            return data + b"<waiting>"


def normalise(replies: list[bytes]) -> list[tuple[object, ...]]:
    """What is compared: status, reason, handle (by first appearance), command,
    Content-Length, body."""
    handles: dict[str, str] = {}
    out: list[tuple[object, ...]] = []
    for reply in replies:
        if not reply.startswith(b"HTTP/"):
            out.append(("no answer", reply))
            continue
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _, status, reason = lines[0].split(" ", 2)
        fields = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
        handle = fields.get("x-gearman-job-handle")
        if handle is not None and handle.startswith("H:"):
            # gearmand cuts a WORK_FAIL's handle short by one byte ("H:host:"): compared
            # as a handle, not byte for byte (docs/compatibility.md).
            key = re.sub(r":\d*$", "", handle) + ":" + (handle.rsplit(":", 1)[1] or "?")
            handle = handles.setdefault(key, f"<handle {len(handles) + 1}>")
        out.append((int(status), reason, handle, fields.get("x-gearman-command"),
                    fields.get("content-length"), body))
    return out


def run_all(server: ServerProcess, http_port: int) -> list[tuple[object, ...]]:
    with working(server.address, dict(HANDLERS)):
        return normalise([exchange(http_port, request) for _, request in SCENARIOS])


@pytest.fixture(scope="module")
def gearmand_answers() -> list[tuple[object, ...]]:
    if gearmand_path() is None:
        pytest.skip("gearmand is not installed (apt-get install gearman-job-server)")
    port = free_port()
    with GearmandServer(extra_args=["-r", "http", "--http-port", str(port)]) as gearmand:
        return run_all(gearmand, port)


@pytest.fixture(scope="module")
def gearshift_answers() -> Iterator[list[tuple[object, ...]]]:
    with HttpServer() as proc:
        yield run_all(proc, proc.http_port)


@pytest.mark.parametrize("index", range(len(SCENARIOS)), ids=[n for n, _ in SCENARIOS])
def test_same_answer_as_gearmand(index: int, gearmand_answers: list[tuple[object, ...]],
                                 gearshift_answers: list[tuple[object, ...]]) -> None:
    assert gearshift_answers[index] == gearmand_answers[index]


def test_answers_are_the_expected_ones(gearshift_answers: list[tuple[object, ...]]) -> None:
    """Pinned on gearshift alone, so a change that broke both servers alike (or a
    differential that compared nothing) still fails."""
    answers = dict(zip([n for n, _ in SCENARIOS], gearshift_answers, strict=True))
    assert answers["sync"][:2] == (200, "OK")
    assert answers["sync"][3:] == ("WORK_COMPLETE", "5", b"olleh")
    assert answers["background"][3:] == ("JOB_CREATED", "0", b"")
    assert answers["failing"][3:] == ("WORK_FAIL", "0", b"")
    assert answers["no function"][:2] == (404, "NOT_FOUND")
    assert answers["same unique again"][2] == answers["same unique coalesces"][2]
    assert answers["default unique '-': same body coalesces"][2] == \
        answers["unknown function, background"][2]
    assert answers["unique too long"][2:4] == ("ARGUMENT_TOO_LARGE", "ERROR")
    assert answers["HEAD, background"][3] is None
    assert answers["unknown function, foreground: waits"] == ("no answer", b"<waiting>")


def _status(server: ServerProcess) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"status\n")
        reply = b""
        while not reply.endswith(b".\n"):
            reply += sock.recv(4096)
        return reply


def test_gearshift_differences_and_extras() -> None:
    """What gearshift does beyond (or unlike) gearmand's plugin: keep-alive, queue-full
    answered as gearmand answers any ERROR, a foreground job dropped with its HTTP
    client, and HTTP/1.1 without Host refused as RFC 9112 says."""
    import http.client
    import time

    with HttpServer() as proc:
        conn = http.client.HTTPConnection("127.0.0.1", proc.http_port, timeout=10)
        for body in (b"one", b"two"):  # one connection, two submissions
            conn.request("POST", "/kept", body=body, headers={"X-Gearman-Background": "true"})
            reply = conn.getresponse()
            reply.read()
            assert reply.getheader("X-Gearman-Command") == "JOB_CREATED"
        with socket.create_connection(("127.0.0.1", proc.port), timeout=5) as admin:
            admin.sendall(b"maxqueue kept 2\n")
            assert admin.recv(64) == b"OK\r\n"
        conn.request("POST", "/kept", body=b"three", headers={"X-Gearman-Background": "true"})
        reply = conn.getresponse()
        reply.read()
        assert (reply.status, reply.getheader("X-Gearman-Job-Handle"),
                reply.getheader("X-Gearman-Command")) == (200, "QUEUE_ERROR", "ERROR")
        conn.close()

        waiting = socket.create_connection(("127.0.0.1", proc.http_port))
        waiting.sendall(b"POST /gone HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
        deadline = time.monotonic() + 5
        while b"gone\t1\t0\t0" not in _status(proc) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b"gone\t1\t0\t0" in _status(proc)
        waiting.close()  # the HTTP client leaves: its foreground job goes, as in Gearman
        while b"gone\t0\t0\t0" not in _status(proc) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b"gone\t0\t0\t0" in _status(proc)

        no_host = exchange(proc.http_port, b"POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nx")
        assert no_host.split(b"\r\n")[0].endswith(b" 400 Bad Request")
