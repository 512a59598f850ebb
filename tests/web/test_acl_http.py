"""``--acl`` over HTTP: bearer tokens name identities, and each request needs the right
the same action needs on the Gearman port -- against a real server over real HTTP."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.broker._acl import AclError, Rights, parse_acl, token_digest
from gearshift.http._auth import CHALLENGE, READ, SUBMIT, WRITE, Refusal, authorize

from .conftest import HttpServer, Reply, call, working

WEB_TOKEN = "web-token-0123456789abcdef"
OPS_TOKEN = "ops-token-0123456789abcdef"

#: web's token is given by its digest only; ops' in clear.
ACL = f"""
[identity.web]
tokens = ["sha256:{hashlib.sha256(WEB_TOKEN.encode()).hexdigest()}"]
submit = ["mail.*"]
admin = "read"

[identity.ops]
tokens = ["{OPS_TOKEN}"]
admin = "write"

[anonymous]
work = ["mail.*"]     # the test's worker connects without a certificate
admin = "none"
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def acl_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("acl") / "acl.toml"
    path.write_text(ACL)
    return path


@pytest.fixture(scope="module")
def server(acl_file: Path) -> Iterator[HttpServer]:
    with HttpServer(extra_args=("-r", "http", "--acl", str(acl_file))) as proc:
        yield proc


def submit(server: HttpServer, function: str, token: str | None, body: bytes = b"hi",
           background: bool = True) -> Reply:
    headers = bearer(token) if token else {}
    if background:
        headers["X-Gearman-Background"] = "true"
    return call(server.http_port, "POST", f"/{function}", body, headers)


def queued(server: HttpServer, function: str) -> int:
    reply = call(server.http_port, "GET", "/api/functions", headers=bearer(OPS_TOKEN))
    assert reply.status == 200, reply
    return sum(sum(f["queued"].values()) for f in reply.json() if f["function"] == function)


def assert_challenge(reply: Reply, error: str | None = None) -> None:
    assert reply.status == 401, reply
    challenge = reply.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="gearshift"')
    if error:
        assert f'error="{error}"' in challenge


def test_a_token_may_submit_to_its_globs_and_no_other(server: HttpServer) -> None:
    before = queued(server, "billing.charge")
    ok = submit(server, "mail.send", WEB_TOKEN)
    # JOB_CREATED: the broker took it too, so the job's connection carried web's rights
    # (the anonymous ones may not submit at all).
    assert (ok.status, ok.headers["x-gearman-command"]) == (200, "JOB_CREATED"), ok
    refused = submit(server, "billing.charge", WEB_TOKEN)
    assert refused.status == 403, refused
    assert b"web may not submit to billing.charge" in refused.body
    assert b"Traceback" not in refused.body
    assert queued(server, "billing.charge") == before  # nothing was queued
    with working(server.address, {"mail.reply": lambda job: job.data[::-1]}):
        done = submit(server, "mail.reply", WEB_TOKEN, b"abc", background=False)
    assert (done.status, done.headers["x-gearman-command"], done.body) == \
        (200, "WORK_COMPLETE", b"cba")
    # Every method of gearmand's protocol is a submission.
    assert call(server.http_port, "GET", "/billing.charge", headers=bearer(WEB_TOKEN)
                ).status == 403
    # An identity without submit rights at all.
    assert submit(server, "mail.send", OPS_TOKEN).status == 403


def test_requests_without_a_valid_token(server: HttpServer) -> None:
    # No token: the anonymous rights, which cover none of these -> 401 and a challenge.
    assert_challenge(submit(server, "mail.send", None))
    assert_challenge(call(server.http_port, "GET", "/api/functions"))
    assert_challenge(call(server.http_port, "GET", "/metrics"))
    # An unknown token, a malformed header.
    unknown = submit(server, "mail.send", "not-a-known-token-at-all")
    assert_challenge(unknown, "invalid_token")
    assert unknown.body == b"unknown token\n"
    api = call(server.http_port, "GET", "/api/functions", headers=bearer("nope" * 5))
    assert_challenge(api, "invalid_token")
    assert api.json() == {"error": "unknown token"}
    basic = call(server.http_port, "GET", "/api/server", headers={"Authorization": "Basic eDp5"})
    assert_challenge(basic, "invalid_request")
    # What stays open: probes and the dashboard's page (its data comes from /api).
    for path in ("/healthz", "/readyz", "/"):
        assert call(server.http_port, "GET", path).status == 200, path
    # Unknown routes and methods answer as without an ACL.
    assert call(server.http_port, "GET", "/api/nothing", headers=bearer(WEB_TOKEN)
                ).status == 404
    assert call(server.http_port, "DELETE", "/api/functions").status == 405


def test_admin_read_and_write_over_http(server: HttpServer) -> None:
    handle = submit(server, "mail.cancel_me", WEB_TOKEN).headers["x-gearman-job-handle"]
    # web: admin read.
    assert call(server.http_port, "GET", "/api/functions", headers=bearer(WEB_TOKEN)
                ).status == 200
    metrics = call(server.http_port, "GET", "/metrics", headers=bearer(WEB_TOKEN))
    assert metrics.status == 200
    assert b"gearshift_jobs_queued" in metrics.body
    assert call(server.http_port, "GET", f"/api/jobs/{handle}", headers=bearer(WEB_TOKEN)
                ).json()["state"] == "queued"
    for path, body in ((f"/api/jobs/{handle}/cancel", {}),
                       ("/api/functions/mail.send/maxqueue", {"max": 5}),
                       ("/api/functions/mail.send/pause", {}),
                       ("/api/dead/purge", {"all": True})):
        denied = call(server.http_port, "POST", path, json.dumps(body).encode(),
                      bearer(WEB_TOKEN))
        assert denied.status == 403, (path, denied)
        assert "admin write" in denied.json()["error"]
    assert_challenge(call(server.http_port, "POST", f"/api/jobs/{handle}/cancel", b"{}"))
    # ops: admin write.
    cancel = call(server.http_port, "POST", f"/api/jobs/{handle}/cancel", b"{}",
                  bearer(OPS_TOKEN))
    assert cancel.json() == {"cancelled": handle}


def test_admin_from_still_applies_to_http_actions(acl_file: Path) -> None:
    with HttpServer(extra_args=("--acl", str(acl_file), "--admin-from", "10.9.9.9")) as proc:
        reply = call(proc.http_port, "POST", "/api/functions/x/maxqueue", b'{"max": 1}',
                     bearer(OPS_TOKEN))
        assert reply.status == 403, reply
        assert "--admin-from" in reply.json()["error"]
        assert call(proc.http_port, "GET", "/api/functions", headers=bearer(OPS_TOKEN)
                    ).status == 200


def test_token_entries_in_the_file() -> None:
    acl = parse_acl(ACL)
    web = acl.rights_for_token(WEB_TOKEN)
    assert web is not None
    assert web.name == "web"
    ops = acl.rights_for_token(OPS_TOKEN)
    assert ops is not None
    assert ops.name == "ops"
    assert acl.rights_for_token("sha256:" + hashlib.sha256(WEB_TOKEN.encode()).hexdigest()
                                ) is None  # the digest is not the token
    assert acl.rights_for_token("") is None
    assert token_digest(OPS_TOKEN) in acl.tokens
    assert OPS_TOKEN.encode() not in repr(acl.tokens).encode()  # kept hashed
    # Subject and tokens together: one identity on both ports.
    both = parse_acl('[identity.x]\nsubject = "CN=x"\ntokens = ["abcdefghijklmnop"]\n')
    assert both.rights_for({"CN": "x"}) is both.rights_for_token("abcdefghijklmnop")


@pytest.mark.parametrize(("text", "message"), [
    ('[identity.x]\nadmin = "read"\n', "needs subject"),
    ('[identity.x]\ntokens = "abcdefghijklmnopq"\n', "list of strings"),
    ('[identity.x]\ntokens = ["short"]\n', "shorter than 16"),
    ('[identity.x]\ntokens = ["sha256:abc"]\n', "64 hex digits"),
    ('[identity.x]\ntokens = ["has spaces in it, sixteen+"]\n', "bearer token"),
    ('[identity.x]\ntokens = ["abcdefghijklmnopq"]\n[identity.y]\n'
     'tokens = ["abcdefghijklmnopq"]\n', "also given to [identity.x]"),
    ('[anonymous]\ntokens = ["abcdefghijklmnopq"]\n', "unknown key"),
])
def test_bad_token_entries_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(AclError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_acl(text, "acl.toml")


def test_authorize_without_a_web_framework() -> None:
    """The check any HTTP front end can call (the gearmand-protocol fast path too)."""
    acl = parse_acl(ACL)
    web = authorize(acl, SUBMIT, f"Bearer {WEB_TOKEN}", b"mail.send")
    assert isinstance(web, Rights)
    assert web.name == "web"
    assert authorize(acl, SUBMIT, f"bearer  {WEB_TOKEN} ", b"mail.x") is web
    denied = authorize(acl, SUBMIT, f"Bearer {WEB_TOKEN}", b"billing")
    assert denied == Refusal(403, "web may not submit to billing")
    anonymous = authorize(acl, READ, None)
    assert isinstance(anonymous, Refusal)
    assert (anonymous.status, anonymous.challenge) == (401, CHALLENGE)
    assert authorize(acl, WRITE, "Bearer wrong-token-xxxxxxxx") == Refusal(
        401, "unknown token", CHALLENGE + ', error="invalid_token"')
    assert authorize(acl, WRITE, f"Bearer {OPS_TOKEN}") is acl.rights_for_token(OPS_TOKEN)
