"""``--acl`` over HTTP: bearer tokens name the ACL's identities, and each request needs
the right the same action needs on the Gearman port.

A request carries ``Authorization: Bearer TOKEN``; the token's identity (its
``tokens = [...]`` in the ACL file, broker/_acl.py) gives the rights. A request without
the header gets the ``[anonymous]`` rights, as a Gearman connection without a client
certificate does. What each path needs:

==============================================  ==========================================
``GET /healthz``, ``GET /readyz``, ``GET /``     nothing: probes, and the dashboard's page
                                                 itself (it holds no data; what it shows
                                                 comes from ``/api``, which is checked)
``GET /metrics``, ``GET /api/...``               admin ``read``
``POST /api/...`` (cancel, maxqueue, pause,      admin ``write`` -- and ``--admin-from``,
resume, dead-letter retry and purge)             checked by the handler as before
gearmand's protocol (``-r http``): any method    ``submit`` for that function
on ``/FUNCTION``
==============================================  ==========================================

Answers: ``401`` with ``WWW-Authenticate: Bearer`` for a malformed header or a token no
identity holds, and for an anonymous request the anonymous rights do not cover (so a
client learns it should send a token); ``403`` when a known identity lacks the right.
Bodies are ``{"error": ...}`` under ``/api/`` and text elsewhere. The check runs before
the body is read, so a refused submission's body is never buffered.

Without ``--acl`` this module is not used at all (the middleware is not installed), so
an open server pays nothing per request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from gearshift.broker._acl import Acl, Rights
from gearshift.http._gearman_http import function_name

#: ``request[RIGHTS]``: the identity's rights, for handlers that act through the broker.
RIGHTS: Final = "gearshift.rights"

CHALLENGE: Final = 'Bearer realm="gearshift"'

OPEN, READ, WRITE, SUBMIT = "open", "read", "write", "submit"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def required(request: web.Request) -> str:
    """What ``request`` needs: OPEN, READ, WRITE or SUBMIT (to ``function_name``)."""
    if request.match_info.http_exception is not None:
        return OPEN  # no route: its 404 or 405 as without an ACL
    path = request.path
    if path in ("/healthz", "/readyz") or (path == "/" and request.method in ("GET", "HEAD")):
        return OPEN
    if path == "/metrics":
        return READ
    if path.startswith("/api/"):
        return READ if request.method in ("GET", "HEAD") else WRITE
    return SUBMIT if function_name(request.raw_path) else OPEN  # "POST /" is gearmand's 404


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not go on: ``status`` 401 (with ``challenge``, the
    ``WWW-Authenticate`` value) or 403, and a message for the body."""

    status: int
    message: str
    challenge: str | None = None


def authorize(acl: Acl, need: str, authorization: str | None,
              function: bytes = b"") -> Rights | Refusal:
    """The rights a request acts with, or why it is refused.

    Framework-free, so any HTTP front end can call it: ``need`` is READ, WRITE or SUBMIT
    (to ``function``), ``authorization`` the request's ``Authorization`` header (None
    when absent: the anonymous rights).
    """
    if authorization is None:
        rights = acl.anonymous
    else:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return Refusal(401, "expected 'Authorization: Bearer TOKEN'",
                           CHALLENGE + ', error="invalid_request"')
        found = acl.rights_for_token(token)
        if found is None:
            return Refusal(401, "unknown token", CHALLENGE + ', error="invalid_token"')
        rights = found
    if need == READ:
        allowed = rights.may_read_admin()
        what = "read the server's state (admin read)"
    elif need == WRITE:
        allowed = rights.may_change_admin()
        what = "change the server's state (admin write)"
    else:
        allowed = rights.may_submit(function)
        what = "submit to " + function.decode("utf-8", "replace")
    if allowed:
        return rights
    if rights is acl.anonymous:
        return Refusal(401, f"a token is needed to {what}", CHALLENGE)
    return Refusal(403, f"{rights.name} may not {what}")


def _http_error(request: web.Request, refusal: Refusal) -> web.HTTPException:
    """The refusal as aiohttp's exception: JSON under /api/, text elsewhere."""
    headers = {"WWW-Authenticate": refusal.challenge} if refusal.challenge else {}
    cls = web.HTTPUnauthorized if refusal.status == 401 else web.HTTPForbidden
    if request.path.startswith("/api/"):
        return cls(headers=headers, text=json.dumps({"error": refusal.message}),
                   content_type="application/json")
    return cls(headers=headers, text=refusal.message + "\n")


def middleware(acl: Acl) -> Middleware:
    """The aiohttp middleware that checks every request against ``acl`` before its
    handler runs, and leaves the rights in ``request[RIGHTS]``."""

    @web.middleware
    async def check_rights(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = required(request)
        if need != OPEN:
            verdict = authorize(acl, need, request.headers.get("Authorization"),
                                function_name(request.raw_path) if need == SUBMIT else b"")
            if isinstance(verdict, Refusal):
                raise _http_error(request, verdict)
            request[RIGHTS] = verdict
        return await handler(request)

    return check_rights
