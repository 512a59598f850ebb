"""The one error tree of the client, worker and admin libraries.

::

    GearmanError
    ├── ServerError            the server answered a request with an ERROR packet (.code, .text)
    ├── AdminError             an admin command was answered with ``ERR`` (.code, .text)
    │   └── UnknownJob         no server knows the handle (never existed, or expired)
    ├── ConnectionFailed       no configured server accepted the request (also a ConnectionError)
    ├── ConnectionLost         the server went away after accepting the job (also a ConnectionError)
    ├── GearmanTimeout         a wait ran past its timeout (also a builtin TimeoutError)
    ├── PayloadError           a payload could not be encoded/decoded (also a ValueError)
    └── JobFailed              the worker sent WORK_FAIL (.handle)
        └── JobException       the worker sent WORK_EXCEPTION (.data holds its text)

The builtin bases are there so ``except TimeoutError`` or ``except ConnectionError`` in
application code keep working; foreign exceptions are translated once, at the socket
boundary, with ``raise ... from``.
"""

from __future__ import annotations


class GearmanError(Exception):
    """Root of every error raised by gearshift's client-side libraries."""


class ServerError(GearmanError):
    """The server refused a request with an ERROR packet (e.g. ``QUEUE_ERROR``)."""

    def __init__(self, code: bytes, text: bytes) -> None:
        super().__init__(f"{code.decode(errors='replace')}: {text.decode(errors='replace')}")
        self.code = code
        self.text = text


class AdminError(GearmanError):
    """An admin text command was answered with an ``ERR`` line."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}" if code and text else code or text)
        self.code = code
        self.text = text


class UnknownJob(AdminError, LookupError):
    """``ERR UNKNOWN_JOB``: the handle never existed, its outcome expired
    (``--keep-results``), or it is not a dead letter (``retry``/``purge``).

    A :class:`LookupError` too, as a missing dictionary key is: asking about a handle
    nobody knows is an answer, not a failure to get one.
    """

    def __init__(self, text: str = "") -> None:
        super().__init__("UNKNOWN_JOB", text)


class ConnectionFailed(GearmanError, ConnectionError):
    """No server could be reached (every candidate refused, timed out or dropped us)."""


class ConnectionLost(GearmanError, ConnectionError):
    """The connection closed after the server had created the job, so its outcome is unknown.

    The job is *not* resubmitted automatically: it may already have run on that server.
    """


class GearmanTimeout(GearmanError, TimeoutError):
    """A wait (connect, JOB_CREATED, result, admin reply) exceeded its timeout."""


class PayloadError(GearmanError, ValueError):
    """A payload could not be encoded or decoded by the chosen codec."""


class JobFailed(GearmanError):
    """The job ended with WORK_FAIL (or was cancelled, or ran out of retries)."""

    def __init__(self, handle: bytes, message: str = "job failed") -> None:
        super().__init__(f"{message} ({handle.decode(errors='replace')})")
        self.handle = handle


class JobException(JobFailed):
    """The job ended with WORK_EXCEPTION; ``data`` is the worker's exception text."""

    def __init__(self, handle: bytes, data: bytes) -> None:
        super().__init__(handle, f"job raised: {data.decode(errors='replace')}")
        self.data = data
