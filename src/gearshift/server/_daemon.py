"""Unix process chores gearmand does for its init scripts: detaching (``--daemon``),
switching user (``--user``), resource limits (``--file-descriptors``, ``--coredump``).

Detaching follows the classic double fork, with one difference that matters to systemd's
``Type=forking``: the command does not return when the fork happens but when the server
listens (or failed to), reported through a pipe by the daemon itself. So "started" means
"accepting connections", and a port in use or an unreachable store makes the command
exit non-zero with the reason instead of a daemon that dies unseen.
"""

from __future__ import annotations

import os
import pwd
import resource
import sys
from dataclasses import dataclass

from gearshift.server._config import StartupError

_READY = b"ok\n"


@dataclass(frozen=True)
class User:
    """The account ``--user`` names, looked up before anything is bound."""

    name: str
    uid: int
    gid: int


def lookup_user(name: str) -> User:
    """The account called (or numbered) ``name``; StartupError naming it if unknown."""
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise StartupError(f"--user {name}: no such user") from None
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def drop_privileges(user: User) -> None:
    """Become ``user`` for good (groups, then gid, then uid: the order that still works).

    Called after the ports are bound and the log, store and pid files are open, which is
    why it can give up root: nothing later needs it (a SIGHUP log reopen needs the log
    file to be writable by ``user``, as with gearmand).
    """
    if os.getuid() == user.uid and os.geteuid() == user.uid:
        return
    try:
        os.initgroups(user.name, user.gid)
        os.setgid(user.gid)
        os.setuid(user.uid)
    except OSError as exc:
        raise StartupError(f"--user {user.name}: cannot switch to it: {exc}") from None


def set_limits(file_descriptors: int | None, coredump: bool) -> None:
    """Apply ``-f N`` (RLIMIT_NOFILE) and ``--coredump`` (RLIMIT_CORE) as gearmand does.

    Raising a hard limit needs root; the error then says which limit and why.
    """
    if file_descriptors is not None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        new_hard = hard if hard == resource.RLIM_INFINITY else max(hard, file_descriptors)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_descriptors, new_hard))
        except (OSError, ValueError) as exc:
            raise StartupError(f"--file-descriptors {file_descriptors}: cannot set the "
                               f"limit (now soft {soft}, hard {hard}): {exc}") from None
    if coredump:
        try:
            resource.setrlimit(resource.RLIMIT_CORE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (OSError, ValueError):
            # Not root: the soft limit can still go up to the hard one.
            _, hard = resource.getrlimit(resource.RLIMIT_CORE)
            resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))


class Readiness:
    """How the server says "listening" or "failed": to the waiting parent when detached,
    else nothing (success) and stderr (failure)."""

    def __init__(self, fd: int | None = None, echo: bool = True) -> None:
        self.fd = fd
        #: print a failure on stderr; False when the log already goes there (once is enough)
        self.echo = echo

    def ready(self) -> None:
        self._send(_READY)

    def failed(self, message: str) -> None:
        if self.fd is None and self.echo:
            print(f"gearshift: {message}", file=sys.stderr)
        self._send(message.encode("utf-8", "replace") + b"\n")

    def _send(self, data: bytes) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.write(fd, data)
        except OSError:
            pass  # the parent is gone (killed); nothing is left to tell
        finally:
            os.close(fd)


def daemonize(log_to_stderr: bool) -> Readiness | int:
    """Detach; in the daemon returns its Readiness, in the original process the exit status.

    The original process waits for the daemon's one-line report: ``ok`` (exit 0) or the
    reason startup failed (printed, exit 1). A daemon that dies before reporting (EOF)
    also makes it exit 1. stdin/stdout go to /dev/null, and stderr too unless the log
    goes there (``-l stderr`` with ``-d`` keeps the terminal's stderr, as gearmand does).
    """
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first:
        os.close(write_fd)
        os.waitpid(first, 0)  # the intermediate child exits at once
        report = b""
        with os.fdopen(read_fd, "rb") as pipe:
            while not report.endswith(b"\n"):
                chunk = pipe.read(4096)
                if not chunk:
                    break
                report += chunk
        if report == _READY:
            return 0
        reason = report.decode("utf-8", "replace").strip() or \
            "the server exited before it was listening (see its log)"
        print(f"gearshift: {reason}", file=sys.stderr)
        return 1
    os.close(read_fd)
    os.setsid()
    if os.fork():
        os._exit(0)  # the session leader goes; the daemon can never get a terminal back
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if log_to_stderr else (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return Readiness(write_fd)
