"""gearmand's options that ``gearshift serve`` takes only so an existing gearmand install
(its systemd unit, /etc/default file or config file) runs unchanged.

Each option either does what gearmand does (``--daemon``, ``--user``, ``--syslog``,
``--config-file``, ``--file-descriptors``, ``--coredump``, the queue table/prefix names,
``--libpq-conninfo``), or is a documented no-op where it cannot change anything here
(``--hashtable-buckets``, ``--store-queue-on-shutdown``), or makes startup fail with the
reason when gearshift lacks the feature (protocol modules other than ``http``): a
server that silently does not listen where the operator asked is worse than one that
does not start.
"""

from __future__ import annotations

import argparse
import shlex
from urllib.parse import parse_qsl, quote, urlencode

#: gearmand's default ``--http-port``; any other value was asked for explicitly.
GEARMAND_HTTP_PORT = 8080


class ConfigError(Exception):
    """A gearmand option gearshift cannot honour, or a bad config file; message says why."""


def add_gearmand_options(p: argparse.ArgumentParser) -> None:
    """Add the gearmand options that cli/_serve.py does not define itself."""
    g = p.add_argument_group("gearmand compatibility (see docs/operations.md)")
    g.add_argument("-V", "--version", action="store_true",
                   help="print the version and exit (as gearmand -V)")
    g.add_argument("-d", "--daemon", action="store_true",
                   help="detach into the background; the command returns once the server "
                        "listens (systemd Type=forking) or fails with the reason")
    g.add_argument("-u", "--user", default=None,
                   help="switch to this user after binding the ports and opening the log, "
                        "store and pid files (needs root)")
    g.add_argument("--syslog", action="store_true",
                   help="also log to syslog (/dev/log), daemon facility")
    g.add_argument("--config-file", default=None, metavar="FILE",
                   help="read options from FILE (gearmand's format: one option per line, "
                        "'--port=4730' or 'port=4730', '#' comments); the command line wins")
    g.add_argument("-f", "--file-descriptors", type=int, default=None, metavar="N",
                   help="set the open-file limit (RLIMIT_NOFILE) to N")
    g.add_argument("--coredump", action="store_true",
                   help="allow core dumps of any size (RLIMIT_CORE unlimited)")
    g.add_argument("--hashtable-buckets", type=int, default=None, metavar="N",
                   help="accepted and ignored: gearshift's hash tables grow by themselves")
    g.add_argument("--store-queue-on-shutdown", action="store_true",
                   help="accepted and ignored: every store already holds every queued "
                        "background job at all times")
    g.add_argument("--libsqlite3-table", default=None, metavar="NAME",
                   help="SQLite table name (gearshift's own layout; ?table= of the URL)")
    g.add_argument("--libpq-table", default=None, metavar="NAME",
                   help="PostgreSQL table name (gearshift's own layout)")
    g.add_argument("--mysql-table", default=None, metavar="NAME",
                   help="MySQL table name (gearshift's own layout)")
    g.add_argument("--redis-prefix", default=None, metavar="TEXT", help="Redis key prefix")
    g.add_argument("--libmemcached-prefix", default=None, metavar="TEXT",
                   help="memcached key prefix")
    g.add_argument("-r", "--protocol", default=None, metavar="MODULE",
                   help="gearmand protocol module: 'http' opens the HTTP listener (on "
                        f"--http-port, default {GEARMAND_HTTP_PORT}); no other is known")


def refuse_unsupported(args: argparse.Namespace) -> None:
    """Raise ConfigError for gearmand features gearshift lacks, rather than ignore them."""
    if args.protocol is not None and args.protocol.lower() != "http":
        raise ConfigError(f"-r {args.protocol}: unknown protocol module (gearmand, and "
                          "gearshift, know only 'http')")
    if args.file_descriptors is not None and args.file_descriptors < 1:
        raise ConfigError(f"--file-descriptors {args.file_descriptors}: must be at least 1")


def http_port(args: argparse.Namespace) -> int | None:
    """The HTTP listener's port: ``--http-port``, or gearmand's 8080 for a bare ``-r http``;
    None when neither was given (no HTTP listener, as in gearmand without ``-r http``)."""
    if args.http_port is not None:
        if not 0 <= args.http_port <= 65535:
            raise ConfigError(f"--http-port {args.http_port}: not a TCP port")
        return int(args.http_port)
    if args.protocol is not None:
        return GEARMAND_HTTP_PORT
    return None


def with_query(url: str, **options: str | None) -> str:
    """``url`` with each non-None option set as a query parameter (replacing one there)."""
    wanted = {k: v for k, v in options.items() if v is not None}
    if not wanted:
        return url
    # Split by hand: urlunsplit would turn 'sqlite' (the default file) into 'sqlite:'.
    base, _, query = url.partition("?")
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in wanted]
    return base + "?" + urlencode(pairs + list(wanted.items()))


def conninfo_to_url(conninfo: str) -> str:
    """libpq conninfo (gearmand's ``--libpq-conninfo``) -> a postgresql:// URL for asyncpg.

    libpq's own parser (through psycopg) reads it, so quoting (``password='a b'``) and
    every key work as in gearmand. user and password go percent-encoded into the URL's
    authority; a host that is a socket directory (``/run/postgresql``) or a host list goes
    in as ``?host=`` (asyncpg reads it there); every other key (sslmode, connect_timeout,
    application_name...) is kept as a query parameter rather than dropped.
    """
    if conninfo.startswith(("postgres://", "postgresql://")):
        return conninfo
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError as exc:
        raise ConfigError("--libpq-conninfo needs psycopg and libpq (pip install "
                          f"'gearshift[postgres]'; apt-get install libpq5): {exc}") from None
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    except Exception as exc:  # psycopg.ProgrammingError: libpq's message names the problem
        raise ConfigError(f"--libpq-conninfo: {exc}") from None
    user = params.pop("user", "")
    password = params.pop("password", "")
    dbname = params.pop("dbname", "")
    host = params.pop("host", "")
    port = params.pop("port", "")
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = auth + "@" if auth else ""
    query: dict[str, str] = {}
    if host and ("/" in host or "," in host or host.startswith("@")):
        query["host"] = host
        if port:
            query["port"] = port
    else:  # no host: asyncpg, like libpq, tries $PGHOST, the usual sockets, localhost
        netloc += f"[{host}]" if ":" in host else host
        netloc += f":{port}" if port else ""
    query.update(params)
    url = f"postgresql://{netloc}/{quote(dbname, safe='')}"
    return url + "?" + urlencode(query) if query else url


def read_config_file(parser: argparse.ArgumentParser, path: str,
                     namespace: argparse.Namespace,
                     where: dict[str, str] | None = None) -> argparse.Namespace:
    """Parse gearmand's config file format into ``namespace``.

    One option per line: ``--port=4730``, ``port=4730``, ``-p 4730`` or a bare flag
    (``daemon``); ``#`` starts a comment; shell-style quoting works. Raises ConfigError
    naming FILE:LINE for an unreadable file, an unknown option or a bad value.
    ``where`` (when given) gets ``FILE:LINE`` for each destination a line set.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config-file {path}: cannot read it: {exc}") from None
    saved = parser.exit_on_error
    parser.exit_on_error = False  # bad values raise ArgumentError, which we locate
    try:
        for lineno, line in enumerate(lines, 1):
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:
                raise ConfigError(f"{path}:{lineno}: {exc}") from None
            if not tokens:
                continue
            if not tokens[0].startswith("-"):
                tokens[0] = "--" + tokens[0]
            option = tokens[0].split("=", 1)[0]
            if option in ("--config-file", "--config", "--print-config", "-h", "--help"):
                raise ConfigError(f"{path}:{lineno}: {option} is not allowed in a config file")
            before = dict(vars(namespace))
            try:
                namespace, extra = parser.parse_known_args(tokens, namespace)
            except argparse.ArgumentError as exc:
                raise ConfigError(f"{path}:{lineno}: {exc}") from None
            if extra:
                raise ConfigError(f"{path}:{lineno}: unknown option {extra[0]!r}")
            if where is not None:
                where.update({dest: f"{path}:{lineno}" for dest, value in vars(namespace).items()
                              if before.get(dest) is not value})
    finally:
        parser.exit_on_error = saved
    return namespace

