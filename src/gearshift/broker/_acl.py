"""Identities and rights (``--acl FILE``): who may submit to, work on and administer what.

The file is TOML. Each ``[identity.NAME]`` table names who it is -- ``subject``, matched
against the TLS client certificate's subject on the Gearman port (``CN=...`` or any
attribute given, e.g. ``"CN=web-1,O=Example"``: every attribute listed must be present
with that value), and/or ``tokens``, bearer tokens presented to the HTTP listener
(``Authorization: Bearer TOKEN``; http/_auth.py) -- and what it may do::

    [identity.web]
    subject = "CN=web"
    tokens = ["sha256:9f86d0...", "a-clear-text-token-of-16+-chars"]
    submit = ["mail.*", "thumbnail"]   # function globs it may submit jobs to
    admin = "read"                     # "none", "read" (listings) or "write"

    [identity.workers]
    subject = "CN=worker-pool"
    work = ["*"]                       # function globs it may register (CAN_DO)

    [anonymous]                        # peers without a certificate, or not matched
    submit = []
    work = []
    admin = "read"

Without ``--acl`` nothing is checked (gearmand's open behaviour). With it, anything not
granted is refused: a submission gets ``ERROR PERMISSION_DENIED``, a CAN_DO for a
function the identity may not work on gets ``ERROR PERMISSION_DENIED`` (the worker is
not registered for it), an admin command above the identity's level gets
``ERR PERMISSION_DENIED``. No I/O here: the server reads the file and the certificate.

A token is kept as its SHA-256 digest: ``"sha256:<64 hex digits>"`` in the file (so the
file need not hold the secret: ``printf %s "$TOKEN" | sha256sum``), or the token itself,
which is hashed when the file is read. A presented token is hashed and looked up by
digest, so neither the lookup's timing nor the table in memory reveals a token.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, Final

ADMIN_LEVELS: Final = ("none", "read", "write")
#: Names remembered per identity with their verdict, so a glob is matched once per name.
MAX_CACHED: Final = 4096
#: How a token's digest is written in the file.
TOKEN_HASH_PREFIX: Final = "sha256:"
#: Shortest clear-text token accepted: anything shorter is guessable, not a secret.
MIN_TOKEN_LENGTH: Final = 16
#: What may be sent in an ``Authorization: Bearer`` header (RFC 6750's b64token).
_TOKEN_CHARS: Final = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_HEX_DIGEST: Final = re.compile(r"[0-9a-fA-F]{64}")


class AclError(ValueError):
    """The ACL file is malformed (the message names the file and the problem)."""


class Rights:
    """What one identity may do; verdicts per function name are cached."""

    def __init__(self, name: str, submit: tuple[str, ...] = (), work: tuple[str, ...] = (),
                 admin: str = "none") -> None:
        self.name = name
        self.submit_globs = submit
        self.work_globs = work
        self.admin = admin
        self._submit: dict[bytes, bool] = {}
        self._work: dict[bytes, bool] = {}

    def __repr__(self) -> str:
        return f"<Rights {self.name}>"

    def may_submit(self, function: bytes) -> bool:
        return _verdict(self._submit, self.submit_globs, function)

    def may_work(self, function: bytes) -> bool:
        return _verdict(self._work, self.work_globs, function)

    def may_read_admin(self) -> bool:
        return self.admin != "none"

    def may_change_admin(self) -> bool:
        return self.admin == "write"


def _verdict(cache: dict[bytes, bool], globs: tuple[str, ...], function: bytes) -> bool:
    known = cache.get(function)
    if known is not None:
        return known
    name = function.decode("utf-8", "surrogateescape")
    allowed = any(fnmatch.fnmatchcase(name, glob) for glob in globs)
    if len(cache) >= MAX_CACHED:
        cache.clear()
    cache[function] = allowed
    return allowed


def token_digest(token: str) -> bytes:
    """What a token is known by: its SHA-256 digest (of its UTF-8 bytes)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass
class Acl:
    """The parsed file: identities with a certificate subject in file order (the first
    whose subject matches wins), identities by token digest, and the rights of peers
    that match none."""

    identities: list[tuple[dict[str, str], Rights]] = field(default_factory=list)
    anonymous: Rights = field(default_factory=lambda: Rights("anonymous"))
    tokens: dict[bytes, Rights] = field(default_factory=dict)

    def rights_for_token(self, token: str) -> Rights | None:
        """The rights of the identity that holds ``token``; None: no identity does."""
        return self.tokens.get(token_digest(token))

    def rights_for(self, subject: dict[str, str] | None) -> Rights:
        """The rights of a peer whose certificate subject is ``subject`` (None: none)."""
        if subject:
            for wanted, rights in self.identities:
                if all(subject.get(key) == value for key, value in wanted.items()):
                    return rights
        return self.anonymous


def certificate_subject(peercert: dict[str, Any] | None) -> dict[str, str] | None:
    """``{"CN": ..., "O": ...}`` from ``ssl.SSLSocket.getpeercert()``'s subject."""
    if not peercert:
        return None
    subject: dict[str, str] = {}
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            short = _SHORT.get(key, key)
            subject[short] = value
    return subject


_SHORT: Final = {"commonName": "CN", "organizationName": "O",
                 "organizationalUnitName": "OU", "countryName": "C",
                 "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "E"}


def parse_acl(text: str, source: str = "<acl>") -> Acl:
    """Parse an ACL file's text.

    Raises:
        AclError: naming ``source`` and what is wrong (TOML errors carry the line).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AclError(f"{source}: {exc}") from None
    unknown = set(data) - {"identity", "anonymous"}
    if unknown:
        raise AclError(f"{source}: unknown table(s) {sorted(unknown)} "
                       "(expected [identity.NAME] and [anonymous])")
    acl = Acl()
    identities = data.get("identity", {})
    if not isinstance(identities, dict):
        raise AclError(f"{source}: 'identity' must be tables: [identity.NAME]")
    for name, table in identities.items():
        where = f"{source}: [identity.{name}]"
        if not isinstance(table, dict):
            raise AclError(f"{where} must be a table")
        subject = table.get("subject")
        tokens = table.get("tokens")
        if subject is None and tokens is None:
            raise AclError(f"{where} needs subject = \"CN=...\" (TLS clients) or "
                           "tokens = [...] (HTTP), or both")
        rights = _rights(name, table, where)
        if subject is not None:
            if not isinstance(subject, str) or not subject.strip():
                raise AclError(f"{where}: subject must be text like \"CN=...\"")
            acl.identities.append((_parse_subject(subject, where), rights))
        if tokens is not None:
            for digest in _parse_tokens(tokens, where):
                if digest in acl.tokens:
                    raise AclError(f"{where}: a token is also given to "
                                   f"[identity.{acl.tokens[digest].name}]")
                acl.tokens[digest] = rights
    anonymous = data.get("anonymous", {})
    if not isinstance(anonymous, dict):
        raise AclError(f"{source}: [anonymous] must be a table")
    acl.anonymous = _rights("anonymous", anonymous, f"{source}: [anonymous]",
                            subject_allowed=False)
    return acl


def _parse_subject(text: str, where: str) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key.strip() or not value.strip():
            raise AclError(f"{where}: subject {text!r}: expected KEY=VALUE[,KEY=VALUE...]")
        wanted[key.strip()] = value.strip()
    return wanted


def _parse_tokens(tokens: Any, where: str) -> list[bytes]:
    """The digests of an identity's ``tokens``: ``"sha256:HEX"`` entries as written,
    clear-text ones hashed."""
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise AclError(f"{where}: tokens must be a list of strings")
    digests = []
    for i, token in enumerate(tokens, 1):
        if token.startswith(TOKEN_HASH_PREFIX):
            hexdigits = token[len(TOKEN_HASH_PREFIX):]
            if not _HEX_DIGEST.fullmatch(hexdigits):
                raise AclError(f"{where}: token {i}: after 'sha256:' come the 64 hex "
                               "digits of the token's SHA-256 (printf %s TOKEN | sha256sum)")
            digests.append(bytes.fromhex(hexdigits))
        elif not _TOKEN_CHARS.fullmatch(token):
            raise AclError(f"{where}: token {i}: only letters, digits and -._~+/ (then "
                           "'=' padding) can be sent as a bearer token")
        elif len(token) < MIN_TOKEN_LENGTH:
            raise AclError(f"{where}: token {i} is shorter than {MIN_TOKEN_LENGTH} "
                           "characters: too easy to guess (python3 -c 'import secrets; "
                           "print(secrets.token_urlsafe(32))' makes a good one)")
        else:
            digests.append(token_digest(token))
    return digests


def _rights(name: str, table: dict[str, Any], where: str,
            subject_allowed: bool = True) -> Rights:
    allowed = {"submit", "work", "admin"} | (
        {"subject", "tokens"} if subject_allowed else set())
    unknown = set(table) - allowed
    if unknown:
        raise AclError(f"{where}: unknown key(s) {sorted(unknown)} "
                       f"(expected {', '.join(sorted(allowed))})")
    globs = {}
    for key in ("submit", "work"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
            raise AclError(f"{where}: {key} must be a list of function globs")
        globs[key] = tuple(value)
    admin = table.get("admin", "none")
    if admin not in ADMIN_LEVELS:
        raise AclError(f"{where}: admin must be one of {', '.join(ADMIN_LEVELS)}")
    return Rights(name, globs["submit"], globs["work"], admin)
