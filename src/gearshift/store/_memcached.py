"""memcached store on pymemcache, run on one private thread (extra ``gearshift[memcached]``).

memcached cannot list its keys and has no transactions, so this backend keeps its own
index and makes ONE compare-and-swap the commit point of every batch:

* ``<prefix>j:<sha256(handle)>`` (+ ``:1``, ``:2``... for pieces beyond 512 KiB) - one
  job record (see :mod:`gearshift.store._record`), written once, never modified.
* ``<prefix>o:<tag>:<sha256(handle)>`` and ``<prefix>s:<tag>:<sha256(key)>`` (+ pieces)
  - one version of an outcome or of a schedule, written by the commit tagged ``tag``.
  These can be replaced, so a new version is a new item, never an overwrite.
* ``<prefix>idx:<tag>:<n>`` - the index that commit made current (a
  :class:`~gearshift.store._record.Index`): every stored job with its retry count and
  run-at time, in insertion order; every outcome and schedule with the tag and piece
  count of its current version, in 512 KiB pieces.
* ``<prefix>flows`` - the admin flow settings (pause, limit), one ``<hex name> <text>``
  line per function, rewritten whole when one changes (not part of the index: they do
  not depend on the jobs, and the rewrite is idempotent).
* ``<prefix>head`` - ``"<gen> <pieces> <tag>"``: which index is current. A head with no
  tag (``"<gen> <pieces>"``) names an older version-1 index ``idx:<gen>:<n>`` of jobs and
  retry counts only; it is read as is and replaced by the next commit.

A batch writes its new records, then the complete next index, then CASes the head from
what it read. Only that CAS makes the batch visible, so a failure anywhere before it
leaves the store as it was (a crash leaves unreferenced items, which are never loaded).
Every commit's tag is new (``<gen>-<random>``), so even a second writer on the same
prefix cannot overwrite an item a current index names: it only loses the CAS. After the
CAS the old index and the replaced or removed records are deleted (best effort).

Honest limits (see docs/storage.md): each commit rewrites the whole index (about 45
bytes per queued job, 55 per kept outcome or schedule); memcached keeps everything in
RAM, so its own restart loses the queue, and it evicts items under memory pressure
unless started with ``-M``; one gearshift server per prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gearshift.store._base import (
    Batch,
    Store,
    StoredJob,
    StoredOutcome,
    StoredSchedule,
    StoreError,
)
from gearshift.store._open import query_option
from gearshift.store._record import (
    Index,
    Ref,
    pack_index2,
    pack_job,
    pack_outcome,
    pack_schedule,
    split,
    unpack_index,
    unpack_index2,
    unpack_job,
    unpack_outcome,
    unpack_schedule,
)

T = TypeVar("T")
log = logging.getLogger("gearshift.store")

#: Largest value written as one item; memcached's default item limit (-I) is 1 MiB.
PIECE = 512 * 1024
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
#: Reads of a moving index before giving up (see MemcachedStore._current).
READ_ATTEMPTS = 20
#: Keys per get_many round trip.
GET_CHUNK = 200


class _Conflict(Exception):
    """A precondition failed inside a batch (duplicate handle, lost CAS)."""


class MemcachedStore(Store):
    """``memcached://host:port[?prefix=TEXT]``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 11211
        self.prefix = query_option(url, "prefix", "gearshift:")
        if any(c.isspace() or not c.isprintable() for c in self.prefix) or len(self.prefix) > 64:
            raise ValueError(f"memcached prefix {self.prefix!r}: printable, no spaces, max 64")
        self.description = f"memcached at {self.host}:{self.port}"
        self._executor: ThreadPoolExecutor | None = None
        self._client: Any = None
        self._index: tuple[tuple[int, str], Index] | None = None  # cached ((gen, tag), index)
        self._lock = asyncio.Lock()
        #: handle -> piece count, for stored jobs larger than one piece (to delete them all)
        self._pieces: dict[bytes, int] = {}

    # ---------------------------------------------------------------- plumbing

    async def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        from pymemcache.exceptions import MemcacheError

        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="gearshift-memcached")
        loop = asyncio.get_running_loop()
        async with self._lock:
            try:
                return await loop.run_in_executor(self._executor, self._run, fn)
            except _Conflict as exc:
                self._index = None
                raise StoreError(f"{self.description}: {what} failed: {exc}") from exc
            except (MemcacheError, OSError) as exc:
                self._index = None
                text = str(exc) or type(exc).__name__
                raise StoreError(f"{self.description} unreachable: {what} failed: {text}"
                                 ) from exc

    def _run(self, fn: Callable[[Any], T]) -> T:
        if self._client is None:
            from pymemcache.client.base import Client

            self._client = Client((self.host, self.port), connect_timeout=CONNECT_TIMEOUT_S,
                                  timeout=COMMAND_TIMEOUT_S, no_delay=True)
        return fn(self._client)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _job_key(self, handle: bytes) -> str:
        return self._key("j", hashlib.sha256(handle).hexdigest()[:40])

    # ------------------------------------------------------------- index, sync

    def _head(self, mc: Any) -> tuple[int, int, str, bytes]:
        """The current ``(gen, pieces, tag, cas)``; tag "" names a version-1 index."""
        value, cas = mc.gets(self._key("head"))
        if value is None:
            mc.add(self._key("head"), b"0 0", noreply=False)
            value, cas = mc.gets(self._key("head"))
            if value is None:
                raise _Conflict("index head vanished (evicted? run memcached with -M)")
        gen, pieces, *tag = value.decode().split()
        return int(gen), int(pieces), "".join(tag), cas

    def _read_index(self, mc: Any, gen: int, pieces: int, tag: str) -> Index:
        if self._index is not None and self._index[0] == (gen, tag):
            return self._index[1]
        keys = [self._key("idx", tag or str(gen), str(i)) for i in range(pieces)]
        got = mc.get_many(keys) if keys else {}
        if len(got) != len(keys):
            raise _Conflict(f"index generation {gen} is incomplete (evicted? run with -M)")
        blob = b"".join(got[k] for k in keys)
        if tag:
            index = unpack_index2(blob)
        else:  # version 1: jobs and retry counts; run-at times are in the job records
            index = Index({h: (n, -1) for h, n in unpack_index(blob).items()})
        self._index = ((gen, tag), index)
        return index

    def _current(self, mc: Any) -> Index:
        """The index the head names now. A reader racing a live writer (a tool, a test
        counting jobs) can find the generation it read deleted by the writer's next
        commit: the head has moved on, so read again (only a head that stays put with
        its pieces missing is a real loss)."""
        for _ in range(READ_ATTEMPTS):
            self._index = None
            gen, pieces, tag, _ = self._head(mc)
            try:
                return self._read_index(mc, gen, pieces, tag)
            except _Conflict:
                if self._head(mc)[:3] == (gen, pieces, tag):
                    raise
        raise _Conflict(f"the index changed {READ_ATTEMPTS} times while being read")

    def _ref_keys(self, kind: str, name: bytes, ref: Ref) -> list[str]:
        """Every item of the outcome (kind "o") or schedule ("s") version ``ref``."""
        tag, pieces = ref
        key = self._key(kind, tag, hashlib.sha256(name).hexdigest()[:40])
        return [key, *(f"{key}:{i}" for i in range(1, pieces))]

    def _records(self, mc: Any, kind: str, refs: dict[bytes, Ref]) -> list[bytes]:
        """The blobs of ``refs`` in their order; a missing one is logged and skipped."""
        names = list(refs)
        out: list[bytes] = []
        for start in range(0, len(names), GET_CHUNK):
            chunk = names[start:start + GET_CHUNK]
            keys = {n: self._ref_keys(kind, n, refs[n]) for n in chunk}
            got = mc.get_many([k for ks in keys.values() for k in ks])
            for name in chunk:
                parts = [got.get(k) for k in keys[name]]
                if any(p is None for p in parts):
                    log.error("%s: %r is in the index but its record is gone (evicted: run "
                              "memcached with -M); skipped", self.description, name)
                    continue
                out.append(b"".join(p for p in parts if p is not None))
        return out

    def _set_all(self, mc: Any, items: dict[str, bytes]) -> None:
        pairs = list(items.items())
        for start in range(0, len(pairs), GET_CHUNK):
            chunk = dict(pairs[start:start + GET_CHUNK])
            failed = mc.set_many(chunk, noreply=False)
            if failed:
                raise _Conflict(f"memcached refused {len(failed)} items (too large? -I)")

    # ---------------------------------------------------------------- contract

    async def open(self) -> None:
        await self._call("connect", lambda mc: self._head(mc))

    async def boot(self) -> int:
        def bump(mc: Any) -> int:
            mc.add(self._key("boot"), b"0", noreply=False)
            value = mc.incr(self._key("boot"), 1, noreply=False)
            if value is None:
                raise _Conflict("boot counter vanished")
            return int(value)

        return await self._call("boot counter update", bump)

    async def load(self) -> list[StoredJob]:
        return await self._call("load", self._load)

    def _load(self, mc: Any) -> list[StoredJob]:
        entries = self._current(mc).jobs
        handles = list(entries)
        jobs: list[StoredJob] = []
        for start in range(0, len(handles), GET_CHUNK):
            chunk = handles[start:start + GET_CHUNK]
            got = mc.get_many([self._job_key(h) for h in chunk])
            for handle in chunk:
                first = got.get(self._job_key(handle))
                blob = None if first is None else self._rest(mc, handle, first)
                if blob is None:
                    log.error("%s: job %r is in the index but its record is gone "
                              "(evicted: run memcached with -M); skipped", self.description,
                              handle)
                    continue
                retries, when = entries[handle]
                job = unpack_job(blob, retries)
                if when >= 0:
                    job.when = when
                jobs.append(job)
        return jobs

    async def load_outcomes(self) -> list[StoredOutcome]:
        def read(mc: Any) -> list[StoredOutcome]:
            blobs = self._records(mc, "o", self._current(mc).outcomes)
            # Index order is insertion order; a stable sort keeps it among equal ends.
            return sorted((unpack_outcome(b) for b in blobs), key=lambda o: o.ended)

        return await self._call("load", read)

    async def load_schedules(self) -> list[StoredSchedule]:
        def read(mc: Any) -> list[StoredSchedule]:
            return [unpack_schedule(b) for b in
                    self._records(mc, "s", self._current(mc).schedules)]

        return await self._call("load", read)

    async def load_flows(self) -> dict[bytes, str]:
        return await self._call("load", self._flows)

    def _flows(self, mc: Any) -> dict[bytes, str]:
        """The admin flow settings item: one ``<hex name> <text>`` line per function."""
        blob = mc.get(self._key("flows")) or b""
        flows: dict[bytes, str] = {}
        for line in blob.decode().splitlines():
            name, _, text = line.partition(" ")
            flows[bytes.fromhex(name)] = text
        return flows

    def _rest(self, mc: Any, handle: bytes, first: bytes) -> bytes | None:
        count = int.from_bytes(first[:4], "big")
        if count == 1:
            return first[4:]
        self._pieces[handle] = count
        keys = [f"{self._job_key(handle)}:{i}" for i in range(1, count)]
        got = mc.get_many(keys)
        if len(got) != len(keys):
            return None
        return first[4:] + b"".join(got[k] for k in keys)

    async def apply(self, batch: Batch) -> None:
        batch = batch.normalized()
        if batch:
            await self._call("write", lambda mc: self._apply(mc, batch))

    def _apply(self, mc: Any, batch: Batch) -> None:
        if batch.flows:
            self._write_flows(mc, batch)
        if not (batch.adds or batch.removes or batch.retries or batch.when or batch.outcomes
                or batch.schedules):
            return
        gen, pieces, old_tag, cas = self._head(mc)
        index = self._read_index(mc, gen, pieces, old_tag).copy()
        tag = f"{gen + 1}-{secrets.token_hex(4)}"
        items: dict[str, bytes] = {}
        garbage = [self._key("idx", old_tag or str(gen), str(i)) for i in range(pieces)]
        jobs = index.jobs
        for job in batch.adds:
            if job.handle in jobs:
                raise _Conflict(f"job handle {job.handle!r} already stored")
            jobs[job.handle] = (job.retries, -1)
            parts = split(pack_job(job), PIECE)
            key = self._job_key(job.handle)
            items[key] = len(parts).to_bytes(4, "big") + parts[0]
            items.update({f"{key}:{i}": part for i, part in enumerate(parts[1:], 1)})
            if len(parts) > 1:
                self._pieces[job.handle] = len(parts)
        gone = [h for h in batch.removes if jobs.pop(h, None) is not None]
        for handle in {**batch.retries, **batch.when}:
            if handle in jobs:
                retries, when = jobs[handle]
                jobs[handle] = (batch.retries.get(handle, retries), batch.when.get(handle, when))
        garbage += self._replace_records(index, batch, items, tag)
        packed = split(pack_index2(index), PIECE)
        items.update({self._key("idx", tag, str(i)): p for i, p in enumerate(packed)})
        self._set_all(mc, items)
        if not mc.cas(self._key("head"), f"{gen + 1} {len(packed)} {tag}".encode(), cas,
                      noreply=False):
            raise _Conflict("another writer changed the index (one server per prefix)")
        self._index = ((gen + 1, tag), index)
        for handle in gone:
            key = self._job_key(handle)
            garbage += [key, *(f"{key}:{i}" for i in range(1, self._pieces.pop(handle, 1)))]
        try:
            mc.delete_many(garbage, noreply=True)
        except OSError:
            log.warning("%s: could not delete %d stale items", self.description, len(garbage))

    def _write_flows(self, mc: Any, batch: Batch) -> None:
        """Flow settings live in one small item of their own, outside the index: they are
        independent of the jobs, and rewriting the item is idempotent, so a batch whose
        CAS then fails and is retried writes the same settings again."""
        flows = self._flows(mc)
        for name, text in batch.flows.items():
            if text is None:
                flows.pop(name, None)
            else:
                flows[name] = text
        blob = "".join(f"{name.hex()} {text}\n" for name, text in flows.items()).encode()
        if not mc.set(self._key("flows"), blob, noreply=False):
            raise _Conflict("memcached refused the flow settings item")

    def _replace_records(self, index: Index, batch: Batch, items: dict[str, bytes],
                         tag: str) -> list[str]:
        """Queue the batch's new outcome and schedule versions into ``items`` and point
        ``index`` at them; the items of the versions they replace (garbage after the CAS)."""
        garbage: list[str] = []
        for handle, outcome in batch.outcomes.items():
            # pop then add: a replaced outcome moves to the end, as in the memory store
            old = index.outcomes.pop(handle, None)
            if old is not None:
                garbage += self._ref_keys("o", handle, old)
            if outcome is not None:
                index.outcomes[handle] = self._record(items, "o", handle, tag,
                                                      pack_outcome(outcome))
        for name, schedule in batch.schedules.items():
            old = index.schedules.get(name)
            if old is not None:
                garbage += self._ref_keys("s", name, old)
            if schedule is None:
                index.schedules.pop(name, None)
            else:  # an updated schedule keeps its place: first-stored order
                index.schedules[name] = self._record(items, "s", name, tag,
                                                     pack_schedule(schedule))
        return garbage

    def _record(self, items: dict[str, bytes], kind: str, name: bytes, tag: str,
                blob: bytes) -> Ref:
        """Queue ``blob`` as a new version of ``name`` under ``tag``; its reference."""
        parts = split(blob, PIECE)
        ref = (tag, len(parts))
        items.update(zip(self._ref_keys(kind, name, ref), parts, strict=True))
        return ref

    async def close(self) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        client, self._client = self._client, None
        if client is not None:
            await asyncio.get_running_loop().run_in_executor(executor, client.close)
        executor.shutdown(wait=True)
