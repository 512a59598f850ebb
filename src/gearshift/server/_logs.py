"""Where the server's log goes and what a line looks like: text for people, JSON for
log shippers, and the one-line startup banner.

``--log-format json`` writes one JSON object per line with ``time`` (UTC, ISO 8601 with
milliseconds), ``level``, ``logger``, ``message``, any ``extra=`` fields the record
carries, and ``exception`` (the formatted traceback) when there is one. The standard
library's logging does the rest (levels, SIGHUP reopening, syslog), so a JSON formatter
is all a structured log needs: a few lines here rather than a dependency such as
python-json-logger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Sequence

from gearshift.server._config import StartupError
from gearshift.store._open import redact

#: Where syslog listens on Linux (and the BSDs); without it, UDP to localhost:514.
SYSLOG_SOCKET = "/dev/log"
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: LogRecord attributes that are not ``extra=`` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class WatchedFile(logging.handlers.WatchedFileHandler):
    """WatchedFileHandler that never raises out of a log call.

    The stdlib handler stats the path before each record and lets the error escape when
    the stat fails for another reason than a missing file -- e.g. after ``--user`` the
    server may no longer reach the log's directory, though the file it opened as root is
    still writable. Then the open file is kept, as a plain FileHandler would.
    """

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError):  # cannot check the path: keep the open file
            self.reopenIfNeeded()
        try:
            logging.FileHandler.emit(self, record)
        except OSError:
            self.handleError(record)


class ReopenableLog:
    """A log destination that SIGHUP reopens (for logrotate), as gearmand's does; a log
    file is also reopened when it was moved or deleted (logging's WatchedFileHandler).

    With ``syslog`` the records also go to the system logger, like gearmand --syslog
    (which writes both); that handler is opened once, since syslog needs no rotation.
    Raises StartupError when the log file cannot be opened.
    """

    def __init__(self, target: str, level: int, syslog: bool = False,
                 log_format: str = "text") -> None:
        self.target = target
        self.log_format = log_format
        self.handler: logging.Handler | None = None
        self.root = logging.getLogger("gearshift")
        self.root.setLevel(level)
        self.root.propagate = False
        try:
            self.open()
        except OSError as exc:
            raise StartupError(f"cannot open the log file {target}: {exc}") from None
        if syslog:
            address: str | tuple[str, int] = (
                SYSLOG_SOCKET if os.path.exists(SYSLOG_SOCKET) else ("localhost", 514))
            handler = logging.handlers.SysLogHandler(
                address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
            handler.setFormatter(logging.Formatter("gearshift[%(process)d]: %(levelname)s "
                                                   "%(name)s: %(message)s"))
            self.root.addHandler(handler)

    def open(self) -> None:
        if self.handler is not None:
            self.root.removeHandler(self.handler)
            self.handler.close()
        if self.target == "none":
            handler: logging.Handler = logging.NullHandler()
        elif self.target == "stderr":
            handler = logging.StreamHandler(sys.stderr)
        else:
            # Reopens by itself when logrotate moved the file away (a stat per record, on
            # the log path only); SIGHUP still reopens at once, as with gearmand.
            handler = WatchedFile(self.target)
        handler.setFormatter(make_formatter(self.log_format))
        self.root.addHandler(handler)
        self.handler = handler


#: The banner's logger: INFO even when --verbose is ERROR (the default), so a server
#: always says once what it is and where it listens; silenced only at CRITICAL.
banner_log = logging.getLogger("gearshift.startup")

def log_banner(version: str, build: str, addresses: Sequence[str], store: str,
               data_dir: str, level: int) -> None:
    """``gearshift 0.1.0 (mypyc) listening on 127.0.0.1:4730, [::1]:4730; store ...``."""
    banner_log.setLevel(logging.INFO if level < logging.CRITICAL else logging.CRITICAL)
    banner_log.info("gearshift %s (%s) listening on %s; store %s; data dir %s", version,
                    build, ", ".join(addresses), redact(store), data_dir,
                    extra={"version": version, "build": build, "listen": list(addresses),
                           "store": redact(store), "data_dir": data_dir})
