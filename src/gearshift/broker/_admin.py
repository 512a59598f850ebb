"""The text admin protocol (``status``, ``workers``, ``show jobs`` ...), answered from
broker state with gearmand's exact line formats so ``gearadmin`` and monitoring scripts
parse our output unchanged.

Formats (gearmand ``libgearman-server/text.cc``): multi-line replies use bare ``\\n`` and
end with a line holding only ``.``; ``OK``/``ERR`` replies end with ``\\r\\n`` except the
``OK <value>`` ones, which end with ``\\n``; error messages use ``+`` for spaces.

One deliberate difference: names, client ids and uniques are client-chosen bytes, and
gearmand prints them raw, so a function named ``evil\\t7\\t7\\t7\\n.\\nhidden`` forges a
``status`` row and ends the listing early for whatever parses it. Here bytes below 0x20,
0x7f and backslash print as ``\\xNN`` (:func:`escape`): every row stays one line with its
columns, and names without those bytes print byte-for-byte as gearmand prints them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Final

from gearshift.broker._access import CHANGING, DENIED, AdminAccess
from gearshift.broker._acl import Rights
from gearshift.broker._admin_flow import FlowCommands
from gearshift.broker._admin_outcomes import OutcomeCommands
from gearshift.broker._core import ADMIN_BATCH_BYTES
from gearshift.broker._deep import DeepQueues
from gearshift.broker._jobs import JobTable
from gearshift.broker._listing import Listing
from gearshift.broker._model import PENDING, Function, Peer
from gearshift.broker._numbers import atoi as _atoi

OK: Final = b"OK\r\n"

#: Bytes that could break a listing's line or column structure, or forge an escape.
_UNSAFE: Final = re.compile(rb"[\x00-\x1f\x7f\\]")


#: Each byte as it is printed: itself, or ``\\xNN`` for the bytes _UNSAFE matches.
_PRINTED: Final = [b"\\x%02x" % i if i < 0x20 or i in (0x5c, 0x7f) else bytes([i])
                   for i in range(256)]


def escape(name: bytes) -> bytes:
    """``name`` with control bytes, DEL and backslash as ``\\xNN``, for one text column
    (see the module docstring); anything else unchanged.

    A name with such bytes is rebuilt byte by byte from a table, not by ``re.sub`` with
    a replacement function: that called back into Python once per byte replaced, and a
    ``status`` over 5,000 names of a dozen control bytes each took 25 ms per 64 KiB
    piece (hostile load e, docs/benchmarks.md)."""
    if _UNSAFE.search(name) is None:
        return name
    printed = _PRINTED
    return b"".join([printed[byte] for byte in name])


def _unknown(word: bytes) -> bytes:
    # gearmand glues the word to the message with no separator; blank lines get it too.
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + word + b"\r\n"


def _err_args(command: bytes) -> bytes:
    return (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+"
            + command + b"\r\n")


ACL_DENIED: Final = b"ERR PERMISSION_DENIED not+allowed+by+--acl+for+this+identity\r\n"


def _admin_allowed(rights: Rights, command: bytes) -> bool:
    """--acl: "write" may do everything, "read" the listings, "none" nothing."""
    if command in CHANGING:
        return rights.may_change_admin()
    return rights.may_read_admin()


class AdminCommands:
    """Dispatches one admin text line to the command that answers it."""

    def __init__(self, broker: DeepQueues) -> None:
        self.broker = broker
        # A listing that can be long answers a Listing, produced a piece at a time.
        self.table: dict[bytes, Callable[[list[bytes]], bytes | Listing]] = {
            b"workers": self.workers,
            b"status": self.status,
            b"prioritystatus": self.priority_status,
            b"show": self.show,
            b"cancel": self.cancel,
            b"create": self.create,
            b"drop": self.drop,
            b"maxqueue": self.maxqueue,
            b"getpid": self.getpid,
            b"verbose": self.verbose,
            b"version": self.version,
            b"shutdown": self.shutdown,
            b"memory": self.memory,
        }
        # Outcomes, dead letters and schedules: gearshift's own, answered in JSON.
        self.outcome_commands = OutcomeCommands(broker)
        self.table.update(self.outcome_commands.table)
        self.access = AdminAccess(broker.config.admin_from)
        # Flow control (pause, resume, limit, limits): gearshift's own.
        self.table.update(FlowCommands(broker).table)

    def handle_line(self, peer: Peer, line: bytes) -> None:
        words = line.split()
        command = self.table.get(words[0].lower()) if words else None
        self.outcome_commands.peer = peer  # a held reply (schedule add) goes to it
        if command is None:
            reply = _unknown(words[0] if words else b"")
        elif words[0].lower() in CHANGING and not self.access.allows(peer.host):
            reply = DENIED
        elif peer.rights is not None and not _admin_allowed(peer.rights, words[0].lower()):
            reply = ACL_DENIED
        else:
            answer = command(words)
            if isinstance(answer, Listing):
                # The first piece now; if more is left, Broker._admin_lines stops the
                # batch and Broker.resume sends the rest as the peer takes it.
                reply = answer.more(ADMIN_BATCH_BYTES)
                if not answer.done:
                    peer.listing = answer
            else:
                reply = answer
        if reply:  # empty: the reply is held until a store write ends
            self.broker._send(peer, reply)

    # -------------------------------------------------------------- listings

    def workers(self, words: list[bytes]) -> Listing:
        return Listing(_worker_rows(self.broker.peers))

    def status(self, words: list[bytes]) -> Listing:
        return Listing(_status_rows(self.broker.functions, False))

    def priority_status(self, words: list[bytes]) -> Listing:
        return Listing(_status_rows(self.broker.functions, True))

    def show(self, words: list[bytes]) -> bytes | Listing:
        rest = [w.lower() for w in words[1:]]
        if not rest:
            return _unknown(words[0])
        if rest == [b"jobs"]:
            # Jobs of deep queues that are only in the store follow: queued, never
            # retried (their handles are listed when the command arrives).
            return Listing(_job_rows(self.broker.jobs, False,
                                     self.broker.spilled_handles()))
        if rest == [b"unique", b"jobs"]:
            return Listing(_job_rows(self.broker.jobs, True))
        return b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"

    # -------------------------------------------------------------- changes

    def cancel(self, words: list[bytes]) -> bytes:
        if len(words) < 3:
            return _unknown(words[0])
        if len(words) != 3 or words[1].lower() != b"job":
            return b"ERR UNKNOWN_ERROR\r\n"
        # (held, b"", while a job of a deep queue is read back from the store)
        return self.broker.cancel_command(words[2], self.outcome_commands.peer)

    def create(self, words: list[bytes]) -> bytes:
        if len(words) != 3 or words[1].lower() != b"function":
            return _err_args(words[0])
        self.broker.function(words[2])
        return OK

    def drop(self, words: list[bytes]) -> bytes:
        if len(words) != 3 or words[1].lower() != b"function":
            return _err_args(words[0])
        wanted = words[2].lower()
        functions = self.broker.functions
        for name, func in functions.items():
            if name.lower() == wanted:
                if func.workers or func.total:
                    return b"ERR there are still connected workers or executing clients\r\n"
                del functions[name]
                for ready in self.broker.ready:
                    ready.pop(func, None)
                self.broker.flow_waits.pop(func, None)
                return OK
        return b"ERR function not found\r\n"

    def maxqueue(self, words: list[bytes]) -> bytes:
        if len(words) < 2:
            return _err_args(words[0])
        values = [_atoi(w) for w in words[2:5]]  # gearmand: atoi, so junk reads as 0
        limits = values if len(values) == 3 else [values[0] if values else 0] * 3
        # An unknown function gets the limit when it appears (gearmand ignores it).
        self.broker.set_max_queue(words[1], [max(v, 0) for v in limits])
        return OK

    # -------------------------------------------------------------- server facts

    def memory(self, words: list[bytes]) -> bytes:
        """gearshift's own: jobs in memory and only in the store (deep queues)."""
        return b"OK " + json.dumps(self.broker.memory_report()).encode() + b"\n"

    def getpid(self, words: list[bytes]) -> bytes:
        return b"OK %d\n" % self.broker.config.pid

    def verbose(self, words: list[bytes]) -> bytes:
        return b"OK " + self.broker.config.verbose.encode() + b"\n"

    def version(self, words: list[bytes]) -> bytes:
        return b"OK " + self.broker.config.version.encode() + b"\n"

    def shutdown(self, words: list[bytes]) -> bytes:
        if not self.broker.config.allow_shutdown:
            return _unknown(words[0])
        if len(words) == 1:
            self.broker.shutdown_request = "now"
        elif len(words) == 2 and words[1].lower() == b"graceful":
            self.broker.shutdown_request = "graceful"
        else:
            return _err_args(words[0])
        return OK


# ------------------------------------------------------------------ listing rows
# Generators over snapshots of keys, each looked up when its row is made: see
# broker/_listing.py for why (a listing is produced over several loop iterations).


def _worker_rows(peers: dict[int, Peer]) -> Iterator[bytes]:
    for peer_id in list(peers):
        peer = peers.get(peer_id)
        if peer is not None:
            # Most recently registered first, as gearmand lists them.
            funcs = b"".join(b" " + escape(f.name) for f in reversed(peer.functions))
            yield b"%d %s %s :%s\n" % (peer.fd, peer.host.encode(), escape(peer.client_id),
                                       funcs)


def _status_rows(functions: dict[bytes, Function], priorities: bool) -> Iterator[bytes]:
    for name in list(functions):
        f = functions.get(name)
        if f is None:
            continue
        if priorities:
            yield b"%s\t%d\t%d\t%d\t%d\n" % (escape(f.name), f.depth(0),
                                              f.depth(1) + f.scheduled, f.depth(2),
                                              len(f.workers))
        else:
            yield b"%s\t%d\t%d\t%d\n" % (escape(f.name), f.total, f.running, len(f.workers))


def _job_rows(jobs: JobTable, unique: bool,
              spilled: list[bytes] | None = None) -> Iterator[bytes]:
    # show jobs columns: handle, retries, ignore flag (always 0: abandoned and cancelled
    # jobs leave at once here), queued flag (1 once the job reached a queue, running
    # included, as gearmand shows it).
    for j in jobs.values():
        if unique:
            yield escape(j.unique) + b"\n"
        else:
            yield b"%s\t%d\t0\t%d\n" % (escape(j.handle), j.retries,
                                         0 if j.state == PENDING else 1)
    for handle in spilled or ():
        yield b"%s\t0\t0\t1\n" % escape(handle)
