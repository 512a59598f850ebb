"""The fast path of gearmand's HTTP protocol (http/_front.py) and its hand-over to
aiohttp: what a connection that mixes submissions with gearshift's own paths gets,
pipelined and chunked requests, and malformed input after a submission."""

from __future__ import annotations

import re
import socket

from .conftest import HttpServer, working

BG = b"X-Gearman-Background: true\r\n"


def _replies(sock: socket.socket, count: int) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Read ``count`` replies (status line, headers, body) or until the server closes."""
    data = b""
    out: list[tuple[bytes, dict[str, str], bytes]] = []
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {k.decode().lower(): v.decode() for k, _, v in
                   (line.partition(b": ") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(data) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        out.append((lines[0], headers, data[:length]))
        data = data[length:]
    return out


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_pipelined_submissions_are_answered_in_order(server: HttpServer) -> None:
    with working(server.address, {"pipe_rev": lambda job: job.data[::-1]}), \
            socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"".join(
            b"POST /pipe_rev HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n%03d" % i
            for i in range(20)))
        replies = _replies(sock, 20)
    assert [body for _, _, body in replies] == [(b"%03d" % i)[::-1] for i in range(20)]
    assert all(status == b"HTTP/1.1 200 OK" for status, _, _ in replies)
    assert all(h["x-gearman-command"] == "WORK_COMPLETE" for _, h, _ in replies)


def test_chunked_body_and_http10_keep_alive(server: HttpServer) -> None:
    with working(server.address, {"chunk_rev": lambda job: job.data[::-1]}), \
            socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /chunk_rev HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                     b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        [(status, _, body)] = _replies(sock, 1)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"edcba")
        sock.sendall(b"POST /chunk_rev HTTP/1.0\r\nConnection: keep-alive\r\n"
                     b"Content-Length: 2\r\n\r\nxy")
        [(status, headers, body)] = _replies(sock, 1)
        assert (status, headers["connection"], body) == (b"HTTP/1.0 200 OK", "keep-alive",
                                                          b"yx")
        sock.sendall(b"POST /chunk_rev HTTP/1.0\r\nContent-Length: 2\r\n\r\nzz")
        assert _replies(sock, 1)[0][2] == b"zz"
        assert _closed(sock)  # HTTP/1.0 without keep-alive: closed after the answer


def test_own_paths_after_a_submission_are_answered_then_closed(server: HttpServer) -> None:
    """A non-submission on a submission connection goes to aiohttp rebuilt, with
    ``Connection: close``; its body (JSON for the API) arrives intact."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /mixed HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n" + BG
                     + b"\r\nx")
        assert _replies(sock, 1)[0][1]["x-gearman-command"] == "JOB_CREATED"
        body = b'{"max": 7}'
        sock.sendall(b"POST /api/functions/mixed/maxqueue HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))
        [(status, headers, reply)] = _replies(sock, 1)
        assert status == b"HTTP/1.1 200 OK"
        assert headers["connection"] == "close"
        assert b'"normal":7' in reply
        assert _closed(sock)


def test_own_paths_first_keep_their_connection_for_submissions(server: HttpServer) -> None:
    """A connection that starts with gearshift's own paths is aiohttp's throughout:
    keep-alive, and a submission on it still answered as gearmand does."""
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _replies(sock, 1)[0][2] == b"ok\n"
        sock.sendall(b"POST /aio HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n" + BG
                     + b"\r\nx")
        [(status, headers, _)] = _replies(sock, 1)
        assert (status, headers["x-gearman-command"]) == (b"HTTP/1.1 200 OK", "JOB_CREATED")
        assert re.fullmatch(r"H:.+:\d+", headers["x-gearman-job-handle"])
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _replies(sock, 1)[0][2] == b"ready\n"


def test_malformed_request_after_a_submission_is_400_and_closed(server: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n" + BG
                     + b"\r\nx" + b"POST /bad HTTP/1.1\r\nno colon\r\n\r\n")
        replies = _replies(sock, 2)
        assert [status for status, _, _ in replies] == [b"HTTP/1.1 200 OK",
                                                        b"HTTP/1.1 400 Bad Request"]
        assert b"Traceback" not in replies[1][2]
        assert _closed(sock)
    with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as sock:
        sock.sendall(b"POST /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n" + BG
                     + b"\r\nx" + b"POST /bad HTTP/1.1\r\nHost: x\r\nX-Big: "
                     + b"a" * 20000 + b"\r\n\r\n")
        assert [s for s, _, _ in _replies(sock, 2)][1] == b"HTTP/1.1 400 Bad Request"
