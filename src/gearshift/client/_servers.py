"""Server lists: parsing ``host[:port]`` specs, choosing a server per job, reconnect backoff.

Pure data and arithmetic, shared by the asyncio and the blocking flavours. The choice rule:
a job with a unique key always goes to the server its key hashes to (so duplicates
coalesce on one server), by consistent hashing (ketama, from ``uhashring``: the ring is
built from the servers' ``host:port`` names, so their order in the list does not matter,
and adding or removing one of n servers moves about 1/n of the keys); the failover
candidates are the next servers clockwise on the ring. Jobs without a unique key go
round-robin, the other servers following in list order.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

DEFAULT_PORT = 4730


#: Prefixes that mark a server spoken to over TLS (``tls://host:port``).
TLS_SCHEMES = ("tls://", "ssl://")


@dataclass(frozen=True, slots=True)
class Address:
    """One server endpoint; ``tls``: its port speaks TLS (written ``tls://host:port``)."""

    host: str
    port: int = DEFAULT_PORT
    tls: bool = False

    def __str__(self) -> str:
        text = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return "tls://" + text if self.tls else text


def parse_address(spec: str) -> Address:
    """``host``, ``host:port``, ``[v6]:port`` or ``:port`` -> Address; any of them may
    start with ``tls://`` (or ``ssl://``) for a server whose port speaks TLS.

    Raises:
        ValueError: the port is not a number in 1..65535, or the spec is empty.
    """
    spec = spec.strip()
    scheme = next((s for s in TLS_SCHEMES if spec.lower().startswith(s)), None)
    if scheme is not None:
        return replace(parse_address(spec[len(scheme):]), tls=True)
    if not spec:
        raise ValueError("empty server address")
    host, port_text = spec, ""
    if spec.startswith("["):
        close = spec.find("]")
        if close < 0:
            raise ValueError(f"bad server address {spec!r}: missing ']'")
        host, rest = spec[1:close], spec[close + 1 :]
        port_text = rest[1:] if rest.startswith(":") else rest
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    if not port_text:
        return Address(host or "localhost")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in server address {spec!r}")
    return Address(host or "localhost", int(port_text))


def parse_servers(servers: str | Sequence[str | Address] | None = None) -> list[Address]:
    """Normalise a server list; ``None`` reads ``GEARMAN_SERVERS`` then ``GEARMAN_SERVER``.

    A string is a comma-separated list, as in libgearman's ``GEARMAN_SERVERS``. With
    nothing configured the default is ``localhost:4730``.
    """
    if servers is None:
        servers = os.environ.get("GEARMAN_SERVERS") or os.environ.get("GEARMAN_SERVER") or ""
        if not servers.strip():
            return [Address("localhost")]
    if isinstance(servers, str):
        items: Sequence[str | Address] = [s for s in servers.split(",") if s.strip()]
    else:
        items = servers
    out = [s if isinstance(s, Address) else parse_address(s) for s in items]
    if not out:
        raise ValueError("the server list is empty")
    return out


class Selector:
    """Orders the servers to try for one job: first choice, then failover candidates."""

    def __init__(self, servers: Sequence[Address | str]) -> None:
        from uhashring import HashRing

        self._count = len(servers)
        self._next = random.randrange(self._count) if self._count > 1 else 0
        # Ring nodes are named by address; a server listed twice gets a distinct name.
        names: dict[str, int] = {}
        for index, server in enumerate(servers):
            name = str(server)
            while name in names:
                name += "#"
            names[name] = index
        self._index = names
        self._ring = HashRing(nodes=list(names), hash_fn="ketama")

    def order(self, unique: bytes | None) -> list[int]:
        if unique:
            if self._count == 1:
                return [0]
            # uhashring hashes str(key) as UTF-8: a UTF-8 unique key is hashed as its
            # exact bytes (what other ketama clients do); other bytes stay deterministic.
            try:
                key = unique.decode("utf-8")
            except UnicodeDecodeError:
                key = unique.decode("latin-1")
            return [self._index[name] for name in self._ring.iterate_nodes(key)]
        first = self._next
        self._next = (self._next + 1) % self._count
        return [(first + i) % self._count for i in range(self._count)]


class Backoff:
    """Exponential reconnect delay with jitter: 0.1 s doubling up to ``cap`` seconds.

    Clients use ``down_until`` to skip a server that just failed (it is still tried when
    every server is marked down); workers sleep ``next_delay()`` between attempts.
    """

    def __init__(self, initial: float = 0.1, cap: float = 5.0) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0
        self.down_until = 0.0

    def next_delay(self) -> float:
        delay: float = min(self.cap, self.initial * 2.0 ** min(self.failures, 16))
        return delay * random.uniform(0.5, 1.0)

    def failed(self, now: float) -> float:
        """Record a failure at ``now``; returns the delay before the next attempt."""
        delay = self.next_delay()
        self.failures += 1
        self.down_until = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.down_until = 0.0

    def is_down(self, now: float) -> bool:
        return now < self.down_until
