"""Choosing a backend from a store URL, importing its driver only when it is used.

The scheme names a private module and the class in it (the anyio ``get_async_backend``
pattern), so ``gearshift serve --store sqlite`` never imports asyncpg, redis or aiomysql.
"""

from __future__ import annotations

import importlib
import os
import re
from urllib.parse import parse_qs, urlsplit, urlunsplit

from gearshift.store._base import Store

#: scheme -> (module under gearshift.store, class name)
BACKENDS: dict[str, tuple[str, str]] = {
    "memory": ("_memory", "MemoryStore"),
    "sqlite": ("_sqlite", "SQLiteStore"),
    "postgresql": ("_postgres", "PostgresStore"),
    "postgres": ("_postgres", "PostgresStore"),
    "mysql": ("_mysql", "MySQLStore"),
    "mariadb": ("_mysql", "MySQLStore"),
    "redis": ("_redis", "RedisStore"),
    "memcached": ("_memcached", "MemcachedStore"),
}

#: backend module -> (its driver, the pip extra that installs it)
DRIVERS: dict[str, tuple[str, str]] = {
    "_postgres": ("asyncpg", "postgres"),
    "_mysql": ("aiomysql", "mysql"),
    "_redis": ("redis", "redis"),
    "_memcached": ("pymemcache", "memcached"),
}

#: Name of the SQLite file used by the bare ``sqlite`` URL, inside the data directory.
DEFAULT_SQLITE_FILE = "queue.db"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}\Z")


def open_store(url: str, *, data_dir: str) -> Store:
    """Build (but do not connect) the store named by ``url``.

    Accepted forms: ``memory``; ``sqlite`` (the file ``<data_dir>/queue.db``);
    ``sqlite:///abs/path.db``; ``postgresql://user@host:port/db``; ``mysql://`` or
    ``mariadb://``; ``redis://host:port/db``; ``memcached://host:port``. SQL backends take
    ``?table=NAME`` and key-value backends ``?prefix=TEXT`` to share one service between
    several servers or test runs.

    Raises:
        ValueError: unknown scheme or malformed option, with the accepted forms; a
            missing driver, naming the extra that installs it.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
    if scheme not in BACKENDS:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"unknown store {redact(url)!r}: scheme must be one of {known}")
    module_name, class_name = BACKENDS[scheme]
    bare, sep, query = url.partition("?")
    if scheme == "sqlite" and bare.lower() in ("sqlite", "sqlite:", "sqlite://"):
        # The default file, keeping options: 'sqlite?table=jobs' (gearmand --libsqlite3-table).
        url = "sqlite://" + os.path.join(os.path.abspath(data_dir), DEFAULT_SQLITE_FILE)
        url += sep + query
    module = importlib.import_module(f"gearshift.store.{module_name}")
    store: Store = getattr(module, class_name)(url)
    return store


def require_driver(url: str) -> None:
    """Import the database driver a store URL needs, now: a missing one is named with
    the extra that installs it, at startup, not as a bare ``No module named`` when the
    store first connects. (``open_store`` itself imports no driver.)

    Raises:
        ValueError: the driver cannot be imported.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
    module_name = BACKENDS.get(scheme, ("", ""))[0]
    if module_name not in DRIVERS:
        return
    driver, extra = DRIVERS[module_name]
    try:
        importlib.import_module(driver)
    except ImportError as exc:
        raise ValueError(f"the {scheme}:// store needs {driver} (pip install "
                         f"'gearshift[{extra}]'): {exc}") from None


def query_option(url: str, name: str, default: str) -> str:
    """The single value of ``?name=`` in ``url``, or ``default``."""
    values = parse_qs(urlsplit(url).query).get(name)
    return values[-1] if values else default


def table_name(url: str, default: str) -> str:
    """The ``?table=`` option, checked to be a plain SQL identifier (it is interpolated)."""
    name = query_option(url, "table", default)
    if not _IDENTIFIER.match(name):
        raise ValueError(f"table name {name!r} must be letters, digits and _ (max 48)")
    return name


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error packets."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
