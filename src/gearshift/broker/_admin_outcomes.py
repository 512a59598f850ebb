"""Admin text commands for what gearmand has no command for: job outcomes, dead
letters and schedules.

gearmand's admin replies are tab-separated columns, which cannot carry result data,
failure reasons or names with tabs and newlines in them. These commands answer in JSON
instead -- one object on an ``OK`` line, or one object per line of a listing ending
with ``.`` -- so any language can read them without a Gearman library:

* ``result HANDLE`` -> ``OK {...}`` (state ``queued``/``running``/``scheduled``/
  ``pending`` while the job lives; ``complete``/``failed``/``exception``/``cancelled``/
  ``dead`` once it ended), or ``ERR UNKNOWN_JOB`` (never existed, or expired).
* ``dead [FUNCTION]`` -> the dead letters, oldest first.
* ``retry dead HANDLE|all|function FUNCTION`` and ``purge dead ...`` -> ``OK <count>``.
* ``schedules`` -> the schedules; ``schedule add FUNCTION MIN HOUR DOM MON DOW
  [unique=U] [data=BASE64] [priority=high|normal|low]`` (standard cron fields, 0 =
  Sunday) -> ``OK KEY``; ``schedule rm KEY`` -> ``OK``.

Byte strings that are data (results, payloads) are base64 (``*_b64``); names and
reasons are text, decoded as UTF-8 with replacement.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any, Final

from gearshift.broker._lifecycle import JobLifecycle
from gearshift.broker._listing import Listing
from gearshift.broker._model import PENDING, QUEUED, RUNNING, SCHEDULED, Job, Peer
from gearshift.broker._outcomes import Outcome
from gearshift.broker._schedules import Schedule, validate_cron

OK: Final = b"OK\r\n"
END: Final = b".\n"
_LIVE_STATES: Final = {PENDING: "pending", QUEUED: "queued", RUNNING: "running",
                       SCHEDULED: "scheduled"}
_PRIORITIES: Final = {b"high": 0, b"normal": 1, b"low": 2}


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _line(obj: dict[str, Any]) -> bytes:
    # ensure_ascii: control characters and non-ASCII become escapes, so one record is
    # always exactly one line of the text protocol.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _err(code: bytes, text: str) -> bytes:
    return b"ERR " + code + b" " + text.replace(" ", "+").encode() + b"\r\n"


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    record: dict[str, Any] = {
        "handle": _text(outcome.handle), "function": _text(outcome.function),
        "unique": _text(outcome.unique), "state": outcome.state, "dead": outcome.dead,
        "attempts": outcome.attempts, "submitted": outcome.submitted or None,
        "started": outcome.started or None, "ended": outcome.ended,
    }
    if outcome.state == "complete":
        record["data_b64"] = _b64(outcome.result)
    else:
        record["reason"] = _text(outcome.result)
    if outcome.dead:
        record["reasons"] = [_text(r) for r in outcome.reasons]
        record["payload_b64"] = _b64(outcome.data)
        record["priority"] = outcome.priority
    return record


def job_json(job: Job) -> dict[str, Any]:
    record: dict[str, Any] = {
        "handle": _text(job.handle), "function": _text(job.function.name),
        "unique": _text(job.unique), "state": _LIVE_STATES.get(job.state, "pending"),
        "dead": False, "attempts": job.retries + (1 if job.state == RUNNING else 0),
        "submitted": job.submitted or None,
        "started": job.started or None if job.state == RUNNING else None, "ended": None,
    }
    if job.state == SCHEDULED and job.when:
        record["next_run"] = job.when
    if job.more is not None and job.more.reasons:
        record["reasons"] = [_text(r) for r in job.more.reasons]
    return record


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    return {
        "key": _text(schedule.key), "function": _text(schedule.function),
        "unique": _text(schedule.unique), "cron": schedule.cron,
        "data_b64": _b64(schedule.data), "priority": schedule.priority,
        "next": schedule.next_fire, "last_fired": schedule.last_fired or None,
    }


def cluster_json(broker: JobLifecycle) -> list[dict[str, Any]]:
    """The servers sharing ``broker``'s store as its last lease renewal saw them (admin
    ``cluster``, ``GET /api/cluster``)."""
    now = broker.clock()
    return [{"server_id": sid, "epoch": epoch, "expires_in": round(expiry - now, 3),
             "adopted_by": adopted, "self": sid == broker.server_id}
            for sid, epoch, expiry, adopted in broker.cluster]


class OutcomeCommands:
    """The commands above, over a broker's lifecycle state."""

    def __init__(self, broker: JobLifecycle) -> None:
        self.broker = broker
        #: the connection whose line is being answered (set by AdminCommands)
        self.peer: Peer | None = None
        self.table: dict[bytes, Callable[[list[bytes]], bytes | Listing]] = {
            b"result": self.result,
            b"dead": self.dead,
            b"retry": self.retry,
            b"purge": self.purge,
            b"schedules": self.list_schedules,
            b"schedule": self.schedule,
            b"cluster": self.list_cluster,
        }

    def result(self, words: list[bytes]) -> bytes:
        if len(words) != 2:
            return _err(b"INVALID_ARGUMENTS", "usage: result HANDLE")
        record = self.lookup(words[1])
        if record is None:
            return b"ERR UNKNOWN_JOB\r\n"
        return b"OK " + _line(record) + b"\n"

    def lookup(self, handle: bytes) -> dict[str, Any] | None:
        """A live job's or a kept outcome's record (``result``, and the HTTP API)."""
        job = self.broker.jobs.get(handle)
        if job is not None:
            return job_json(job)
        outcome = self.broker.outcomes.get(handle)
        return None if outcome is None else outcome_json(outcome)

    def dead_records(self, function: bytes | None = None, offset: int = 0,
                     limit: int | None = None) -> list[dict[str, Any]]:
        """The dead letters (of ``function``, if given), oldest first; ``limit`` of them
        from ``offset`` on (records are built for those only)."""
        letters = (o for o in self.broker.outcomes.dead.values()
                   if function is None or o.function == function)
        stop = None if limit is None else offset + limit
        return [outcome_json(o) for o in itertools.islice(letters, offset, stop)]

    def dead(self, words: list[bytes]) -> bytes | Listing:
        """``dead [FUNCTION]``: a dead letter carries its payload, so the listing can be
        as large as ``--dead-letters-max`` (and more, in base64): produced a piece at a
        time (broker/_listing.py)."""
        if len(words) > 2:
            return _err(b"INVALID_ARGUMENTS", "usage: dead [FUNCTION]")
        return Listing(self._dead_rows(words[1] if len(words) == 2 else None))

    def _dead_rows(self, function: bytes | None) -> Iterator[bytes]:
        dead = self.broker.outcomes.dead
        for handle in list(dead):
            outcome = dead.get(handle)
            if outcome is not None and (function is None or outcome.function == function):
                yield _line(outcome_json(outcome)) + b"\n"

    def _dead_handles(self, words: list[bytes]) -> list[bytes] | None:
        """The dead letters ``retry dead ...`` / ``purge dead ...`` name, or None."""
        if len(words) < 3 or words[1].lower() != b"dead":
            return None
        if len(words) == 3 and words[2].lower() == b"all":
            return self.select_dead()
        if len(words) == 4 and words[2].lower() == b"function":
            return self.select_dead(function=words[3])
        if len(words) == 3:
            return [words[2]]
        return None

    def select_dead(self, function: bytes | None = None) -> list[bytes]:
        """Handles of every dead letter, or of ``function``'s."""
        dead = self.broker.outcomes.dead
        if function is None:
            return list(dead)
        return [h for h, o in dead.items() if o.function == function]

    def act_on_dead(self, verb: bytes, handles: list[bytes]) -> int:
        """``retry`` or ``purge`` each dead letter named; how many there were."""
        action = self.broker.retry_dead if verb == b"retry" else self.broker.purge_dead
        return sum(action(h) for h in handles)

    def retry(self, words: list[bytes]) -> bytes:
        return self._on_dead(words, b"retry")

    def purge(self, words: list[bytes]) -> bytes:
        return self._on_dead(words, b"purge")

    def _on_dead(self, words: list[bytes], verb: bytes) -> bytes:
        """``VERB dead HANDLE|all|function F``: retry or purge each dead letter named;
        ``OK <count>``, or ERR UNKNOWN_JOB for one handle that is not a dead letter."""
        handles = self._dead_handles(words)
        if handles is None:
            return _err(b"INVALID_ARGUMENTS",
                        f"usage: {verb.decode()} dead HANDLE|all|function FUNCTION")
        done = self.act_on_dead(verb, handles)
        if len(words) == 3 and words[2].lower() != b"all" and not done:
            return b"ERR UNKNOWN_JOB\r\n"
        return b"OK %d\n" % done

    def list_schedules(self, words: list[bytes]) -> bytes:
        schedules = self.broker.schedules.schedules.values()
        return b"".join(_line(schedule_json(s)) + b"\n" for s in schedules) + END

    def list_cluster(self, words: list[bytes]) -> bytes:
        """The servers sharing this server's store and their leases (none without one)."""
        return b"".join(_line(record) + b"\n" for record in cluster_json(self.broker)) + END

    def schedule(self, words: list[bytes]) -> bytes:
        verb = words[1].lower() if len(words) > 1 else b""
        if verb == b"rm" and len(words) == 3:
            return OK if self.broker.remove_schedule(words[2]) else \
                b"ERR UNKNOWN_SCHEDULE\r\n"
        if verb != b"add" or len(words) < 8:
            return _err(b"INVALID_ARGUMENTS", "usage: schedule add FUNCTION MIN HOUR DOM MON "
                        "DOW [unique=U] [data=BASE64] [priority=P] | schedule rm KEY")
        options: dict[bytes, bytes] = {}
        for word in words[8:]:
            name, sep, value = word.partition(b"=")
            if not sep or name.lower() not in (b"unique", b"data", b"priority"):
                return _err(b"INVALID_ARGUMENTS", f"unknown option {_text(word)!r}")
            options[name.lower()] = value
        try:
            data = base64.b64decode(options.get(b"data", b""), validate=True)
        except (binascii.Error, ValueError):
            return _err(b"INVALID_ARGUMENTS", "data= must be base64")
        priority = _PRIORITIES.get(options.get(b"priority", b"normal").lower())
        if priority is None:
            return _err(b"INVALID_ARGUMENTS", "priority= must be high, normal or low")
        try:
            cron = validate_cron(_text(b" ".join(words[3:8])), self.broker.clock())
            self.broker.add_schedule(words[2], options.get(b"unique", b""), cron, data,
                                     priority, self.peer, text=True)
        except ValueError as exc:
            return _err(b"INVALID_ARGUMENTS", str(exc))
        return b""  # add_schedule answers (once stored, with a store)
