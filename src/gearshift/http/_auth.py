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
    return SUBMIT if function_name(request) else OPEN  # "POST /" is gearmand's 404


class HttpAcl:
    """The rights of a request, and the refusals."""

    def __init__(self, acl: Acl) -> None:
        self.acl = acl

    def rights(self, request: web.Request) -> Rights:
        """The identity of ``request``'s bearer token, or the anonymous rights without one.

        Raises:
            web.HTTPUnauthorized: a header that is not ``Bearer TOKEN``, or an unknown token.
        """
        header = request.headers.get("Authorization")
        if header is None:
            return self.acl.anonymous
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _refusal(request, 401, "expected 'Authorization: Bearer TOKEN'",
                           'error="invalid_request"')
        rights = self.acl.rights_for_token(token)
        if rights is None:
            raise _refusal(request, 401, "unknown token", 'error="invalid_token"')
        return rights

    def check(self, request: web.Request) -> Rights | None:
        """The rights ``request`` acts with (None: it needs none).

        Raises:
            web.HTTPUnauthorized, web.HTTPForbidden: see the module docstring.
        """
        need = required(request)
        if need == OPEN:
            return None
        rights = self.rights(request)
        if need == READ:
            allowed = rights.may_read_admin()
            what = "read the server's state (admin read)"
        elif need == WRITE:
            allowed = rights.may_change_admin()
            what = "change the server's state (admin write)"
        else:
            function = function_name(request)
            allowed = rights.may_submit(function)
            what = "submit to " + function.decode("utf-8", "replace")
        if allowed:
            return rights
        if rights is self.acl.anonymous:
            raise _refusal(request, 401, f"a token is needed to {what}", None)
        raise _refusal(request, 403, f"{rights.name} may not {what}", None)


def _refusal(request: web.Request, status: int, message: str,
             error: str | None) -> web.HTTPException:
    """A 401 (with its challenge) or 403; JSON under /api/, text elsewhere."""
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = CHALLENGE + (", " + error if error else "")
    cls = web.HTTPUnauthorized if status == 401 else web.HTTPForbidden
    if request.path.startswith("/api/"):
        return cls(headers=headers, text=json.dumps({"error": message}),
                   content_type="application/json")
    return cls(headers=headers, text=message + "\n")


def middleware(acl: Acl) -> Middleware:
    """The aiohttp middleware that checks every request against ``acl`` before its
    handler runs, and leaves the rights in ``request[RIGHTS]``."""
    gate = HttpAcl(acl)

    @web.middleware
    async def check_rights(request: web.Request, handler: Handler) -> web.StreamResponse:
        rights = gate.check(request)
        if rights is not None:
            request[RIGHTS] = rights
        return await handler(request)

    return check_rights
