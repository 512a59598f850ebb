"""Reading a background job's outcome back: ``AsyncClient.result`` does it through here.

The Gearman protocol has no packet for "how did that background job end", so this goes
through gearshift's admin ``result`` command, on admin connections of their own: the
client's job connections stay free of text-protocol traffic, which some servers would
mix up with binary replies.

Which server to ask: the one that gave the handle, when the client submitted the job
itself and still remembers it; else each server in turn until one knows it. Asking
only the origin matters, because two servers with the same handle prefix issue the
same handles. Waiting polls (50 ms, doubling to 500 ms): a background job has no
connection that could be told when it ends, and a few admin lines a second are cheap.
"""

# ruff: noqa: ASYNC109 -- explicit timeouts: the same code runs as the blocking client
from __future__ import annotations

import time
from collections.abc import Sequence

from gearshift.client._admin_lines import handle_word
from gearshift.client._backends.asyncio_ import sleep
from gearshift.client._errors import (
    AdminError,
    ConnectionFailed,
    ConnectionLost,
    GearmanError,
    GearmanTimeout,
    UnknownJob,
)
from gearshift.client._models import JobOutcome
from gearshift.client._servers import Address
from gearshift.client._tls import TlsChoice

from ._admin import AsyncAdminClient

FIRST_POLL = 0.05
LAST_POLL = 0.5


async def read_outcome(servers: Sequence[Address], handle: str | bytes, wait: float | None,
                       timeout: float, tls: TlsChoice | None = None) -> JobOutcome:
    """The job's outcome from the first server that knows ``handle``; with ``wait``,
    polled until it ended or ``wait`` seconds passed (then the unfinished state).

    Raises:
        UnknownJob: every server that answered does not know the handle.
        ConnectionFailed: no server answered at all.
    """
    handle = handle_word(handle)  # garbage is unknown everywhere: no need to ask
    admins = [AsyncAdminClient(address, timeout=timeout, ssl=tls(address) if tls else None)
              for address in servers]
    try:
        admin, outcome = await _ask_each(admins, handle)
        if wait is None:
            return outcome
        deadline = time.monotonic() + wait
        delay = FIRST_POLL
        while not outcome.done:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await sleep(min(delay, left))
            delay = min(delay * 2, LAST_POLL)
            outcome = await admin.result(handle)
        return outcome
    finally:
        for admin in admins:
            await admin.aclose()


async def _ask_each(admins: Sequence[AsyncAdminClient],
                    handle: str) -> tuple[AsyncAdminClient, JobOutcome]:
    """The first server that knows the handle, and its answer. Servers that cannot be
    reached, or cannot answer ``result`` (gearmand: ERR UNKNOWN_COMMAND), are skipped."""
    unknown = 0
    error: GearmanError | None = None
    for admin in admins:
        try:
            return admin, await admin.result(handle)
        except UnknownJob:
            unknown += 1
        except (AdminError, ConnectionFailed, ConnectionLost, GearmanTimeout) as exc:
            error = exc
    if unknown:
        skipped = len(admins) - unknown
        raise UnknownJob(f"no server knows job {handle}"
                         + (f" ({skipped} could not answer: {error})" if skipped else ""))
    if isinstance(error, AdminError):
        raise error
    raise ConnectionFailed(f"no server answered about job {handle}: {error}")
