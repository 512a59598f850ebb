"""memcached store on pymemcache, run on one private thread (extra ``gearshift[memcached]``).

memcached cannot list its keys and has no transactions, so this backend keeps its own
index and makes ONE compare-and-swap the commit point of every batch:

* ``<prefix>j:<sha256(handle)>`` (+ ``:1``, ``:2``... for pieces beyond 512 KiB) - one
  job record (see :mod:`gearshift.store._record`), written once, never modified.
* ``<prefix>idx:<gen>:<n>`` - generation ``gen`` of the index: every stored handle with
  its retry count, in insertion order, in pieces of 512 KiB.
* ``<prefix>head`` - ``"<gen> <pieces>"``: which index generation is current.

A batch writes the new job records, then the complete next index generation, then
CASes the head from ``gen`` to ``gen + 1``. Only that CAS makes the batch visible, so a
failure anywhere before it leaves the store as it was (a crash leaves unreferenced
items, which are never loaded). After the CAS the old generation and removed records
are deleted (best effort).

Honest limits (see docs/storage.md): each commit rewrites the whole index (about 40
bytes per queued job); memcached keeps everything in RAM, so its own restart loses
the queue, and it evicts items under memory pressure unless started with ``-M``;
one gearshift server per prefix (a second writer makes the CAS fail, safely).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gearshift.store._base import Batch, Store, StoredJob, StoreError
from gearshift.store._open import query_option
from gearshift.store._record import pack_index, pack_job, split, unpack_index, unpack_job

T = TypeVar("T")
log = logging.getLogger("gearshift.store")

#: Largest value written as one item; memcached's default item limit (-I) is 1 MiB.
PIECE = 512 * 1024
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
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
        self._index: tuple[int, dict[bytes, int]] | None = None  # cached (gen, entries)
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

    def _head(self, mc: Any) -> tuple[int, int, bytes]:
        value, cas = mc.gets(self._key("head"))
        if value is None:
            mc.add(self._key("head"), b"0 0", noreply=False)
            value, cas = mc.gets(self._key("head"))
            if value is None:
                raise _Conflict("index head vanished (evicted? run memcached with -M)")
        gen, pieces = (int(x) for x in value.split())
        return gen, pieces, cas

    def _read_index(self, mc: Any, gen: int, pieces: int) -> dict[bytes, int]:
        if self._index is not None and self._index[0] == gen:
            return self._index[1]
        keys = [self._key("idx", str(gen), str(i)) for i in range(pieces)]
        got = mc.get_many(keys) if keys else {}
        if len(got) != len(keys):
            raise _Conflict(f"index generation {gen} is incomplete (evicted? run with -M)")
        entries = unpack_index(b"".join(got[k] for k in keys))
        self._index = (gen, entries)
        return entries

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
        self._index = None
        gen, pieces, _ = self._head(mc)
        entries = self._read_index(mc, gen, pieces)
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
                jobs.append(unpack_job(blob, entries[handle]))
        return jobs

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
        gen, pieces, cas = self._head(mc)
        entries = dict(self._read_index(mc, gen, pieces))
        items: dict[str, bytes] = {}
        for job in batch.adds:
            if job.handle in entries:
                raise _Conflict(f"job handle {job.handle!r} already stored")
            entries[job.handle] = job.retries
            parts = split(pack_job(job), PIECE)
            key = self._job_key(job.handle)
            items[key] = len(parts).to_bytes(4, "big") + parts[0]
            items.update({f"{key}:{i}": part for i, part in enumerate(parts[1:], 1)})
            if len(parts) > 1:
                self._pieces[job.handle] = len(parts)
        gone = [h for h in batch.removes if entries.pop(h, None) is not None]
        for handle, count in batch.retries.items():
            if handle in entries:
                entries[handle] = count
        index = split(pack_index(entries), PIECE)
        items.update({self._key("idx", str(gen + 1), str(i)): p for i, p in enumerate(index)})
        self._set_all(mc, items)
        if not mc.cas(self._key("head"), f"{gen + 1} {len(index)}".encode(), cas,
                      noreply=False):
            raise _Conflict("another writer changed the index (one server per prefix)")
        self._index = (gen + 1, entries)
        garbage = [self._key("idx", str(gen), str(i)) for i in range(pieces)]
        for handle in gone:
            key = self._job_key(handle)
            garbage += [key, *(f"{key}:{i}" for i in range(1, self._pieces.pop(handle, 1)))]
        try:
            mc.delete_many(garbage, noreply=True)
        except OSError:
            log.warning("%s: could not delete %d stale items", self.description, len(garbage))

    async def close(self) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        client, self._client = self._client, None
        if client is not None:
            await asyncio.get_running_loop().run_in_executor(executor, client.close)
        executor.shutdown(wait=True)
