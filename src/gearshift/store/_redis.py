"""Redis store on redis.asyncio (extra ``gearshift[redis]``).

Layout under a key prefix (default ``gearshift:``):

* ``<prefix>job:<handle>`` - a hash: ``f`` function, ``u`` unique, ``d`` data, ``p``
  priority, ``w`` run-at time, ``r`` reducer, ``n`` retries. Fields are raw bytes, so
  payloads with NUL bytes round-trip (gearmand's plugin ``strdup``s them and truncates).
* ``<prefix>order`` - a sorted set of handles scored by insertion sequence (replay order).
* ``<prefix>seq`` and ``<prefix>boot`` - counters.

Each batch is ONE Lua script call. Redis runs a script without interleaving other
commands, and the script checks every precondition (no duplicate handle) before its
first write, so a batch is all or nothing. The script names keys it computes itself,
so this backend needs a single Redis server (not Redis Cluster). Durability is Redis's
own: run it with ``appendonly yes`` (``appendfsync always`` for no loss at all).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gearshift.store._base import Batch, Store, StoredJob, StoreError
from gearshift.store._open import query_option, redact

log = logging.getLogger("gearshift.store")

CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 30.0
#: HGETALLs per pipeline round trip while loading.
LOAD_CHUNK = 1000

_APPLY = """
local p = ARGV[1]
local nadd = tonumber(ARGV[2])
local i = 3
local seen = {}
for k = 0, nadd - 1 do
  local h = ARGV[i + k * 8]
  if seen[h] or redis.call('EXISTS', p .. 'job:' .. h) == 1 then
    return redis.error_reply('job handle already stored: ' .. h)
  end
  seen[h] = true
end
local seq = 0
if nadd > 0 then seq = redis.call('INCRBY', p .. 'seq', nadd) - nadd end
for k = 0, nadd - 1 do
  local b = i + k * 8
  local h = ARGV[b]
  redis.call('HSET', p .. 'job:' .. h, 'f', ARGV[b + 1], 'u', ARGV[b + 2], 'd', ARGV[b + 3],
             'p', ARGV[b + 4], 'w', ARGV[b + 5], 'r', ARGV[b + 6], 'n', ARGV[b + 7])
  redis.call('ZADD', p .. 'order', seq + k + 1, h)
end
i = i + nadd * 8
local nrem = tonumber(ARGV[i])
i = i + 1
for k = 0, nrem - 1 do
  redis.call('DEL', p .. 'job:' .. ARGV[i + k])
  redis.call('ZREM', p .. 'order', ARGV[i + k])
end
i = i + nrem
local nret = tonumber(ARGV[i])
i = i + 1
for k = 0, nret - 1 do
  local key = p .. 'job:' .. ARGV[i + 2 * k]
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'n', ARGV[i + 2 * k + 1]) end
end
return nadd
"""


class RedisStore(Store):
    """``redis://[:password@]host:port/db[?prefix=TEXT]``."""

    def __init__(self, url: str) -> None:
        self.prefix = query_option(url, "prefix", "gearshift:").encode()
        parts = urlsplit(url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "prefix"]
        self.url = urlunsplit(parts._replace(query=urlencode(query)))
        self.description = (f"Redis at {parts.hostname or 'localhost'}:{parts.port or 6379}"
                            f"{parts.path or ''}")
        self.redacted = redact(url)
        self._client: Any = None
        self._script: Any = None

    def _connect(self) -> Any:
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        if self._client is None:
            # No transparent retries: a batch script resent after a dropped reply could
            # run twice. A failed call raises; the group committer retries the batch.
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=COMMAND_TIMEOUT_S, decode_responses=False,
                retry=Retry(NoBackoff(), 0))
            self._script = self._client.register_script(_APPLY)
        return self._client

    def _error(self, what: str, exc: BaseException) -> StoreError:
        import redis.exceptions

        text = str(exc) or type(exc).__name__
        if isinstance(exc, (OSError, redis.exceptions.ConnectionError,
                            redis.exceptions.TimeoutError)):
            return StoreError(f"{self.description} unreachable: {what} failed: {text}")
        return StoreError(f"{self.description}: {what} failed: {text}")

    async def open(self) -> None:
        import redis.exceptions

        client = self._connect()
        try:
            await client.ping()
        except (redis.exceptions.RedisError, OSError) as exc:
            raise self._error("connect", exc) from exc
        try:
            info = await client.info("persistence")
        except redis.exceptions.ResponseError:  # INFO may be denied by an ACL: not fatal
            return
        if str(info.get("aof_enabled", "0")) != "1":
            log.warning("%s has appendonly off: jobs written since its last snapshot are "
                        "lost if Redis itself crashes", self.description)

    async def boot(self) -> int:
        import redis.exceptions

        try:
            value: int = await self._connect().incr(self.prefix + b"boot")
        except (redis.exceptions.RedisError, OSError) as exc:
            raise self._error("boot counter update", exc) from exc
        return value

    async def load(self) -> list[StoredJob]:
        import redis.exceptions

        client = self._connect()
        try:
            handles: list[bytes] = await client.zrange(self.prefix + b"order", 0, -1)
            jobs: list[StoredJob] = []
            for start in range(0, len(handles), LOAD_CHUNK):
                chunk = handles[start:start + LOAD_CHUNK]
                async with client.pipeline(transaction=False) as pipe:
                    for handle in chunk:
                        pipe.hgetall(self.prefix + b"job:" + handle)
                    rows = await pipe.execute()
                jobs.extend(_job(h, row) for h, row in zip(chunk, rows, strict=True) if row)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise self._error("load", exc) from exc
        return jobs

    async def apply(self, batch: Batch) -> None:
        import redis.exceptions

        batch = batch.normalized()
        if not batch:
            return
        args: list[bytes | int] = [self.prefix, len(batch.adds)]
        for j in batch.adds:
            args += [j.handle, j.function, j.unique, j.data, j.priority, j.when, j.reducer,
                     j.retries]
        args.append(len(batch.removes))
        args += batch.removes
        args.append(len(batch.retries))
        for handle, count in batch.retries.items():
            args += [handle, count]
        self._connect()
        try:
            await self._script(keys=[], args=args)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise self._error("write", exc) from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _job(handle: bytes, row: dict[bytes, bytes]) -> StoredJob:
    return StoredJob(handle, row[b"f"], row[b"u"], row[b"d"], int(row[b"p"]), int(row[b"w"]),
                     row[b"r"], int(row[b"n"]))
