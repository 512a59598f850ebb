"""``gearshift serve`` parses every option the installed gearmand lists, and turns gearmand's
queue options (conninfo, table names, prefixes) into store URLs that keep every detail."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from urllib.parse import parse_qs

import pytest

from gearshift.cli import build_parser
from gearshift.cli._gearmand_options import ConfigError, conninfo_to_url
from gearshift.cli._serve import store_url
from gearshift.testing import gearmand_path

#: A value each option taking one accepts (argparse checks choices and types).
_VALUES = {"verbose": "INFO", "queue-type": "builtin"}
#: Options argparse handles by printing and exiting, checked apart below.
_EXITS = {"help"}


def _gearmand_options() -> list[tuple[str | None, str, bool]]:
    """(short, long, takes a value) for every option in ``gearmand --help``."""
    binary = gearmand_path()
    if binary is None:
        pytest.skip("gearmand is not installed (apt-get install gearman-job-server)")
    text = subprocess.run([binary, "--help"], capture_output=True, text=True,
                          timeout=30).stdout
    found = re.findall(r"^\s+(?:-(\w) \[ )?--([\w-]+)(?: \])?( arg)?", text, re.MULTILINE)
    assert len(found) > 40, text  # the help format changed: fix the pattern, not the test
    return [(short or None, name, bool(arg)) for short, name, arg in found]


def test_every_gearmand_option_is_accepted() -> None:
    parser = build_parser()
    for short, name, takes_value in _gearmand_options():
        if name in _EXITS:
            continue
        for spelling in filter(None, [f"--{name}", short and f"-{short}"]):
            argv = ["serve", spelling] + ([_VALUES.get(name, "1")] if takes_value else [])
            parser.parse_args(argv)  # SystemExit(2) here names the rejected option


def test_help_is_accepted_in_both_spellings() -> None:
    for spelling in ("-h", "--help"):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["serve", spelling])
        assert exit_info.value.code == 0


def test_gearmand_equals_form_is_accepted() -> None:
    args = build_parser().parse_args(["serve", "--pid-file=/run/g.pid", "--listen=localhost",
                                      "--daemon", "--log-file=/var/log/g.log"])
    assert (args.pid_file, args.listen, args.daemon) == ("/run/g.pid", ["localhost"], True)


# ------------------------------------------------------------------ --libpq-conninfo

needs_psycopg = pytest.mark.skipif(importlib.util.find_spec("psycopg") is None,
                                   reason="conninfo parsing needs psycopg (extra 'test')")


@needs_psycopg
@pytest.mark.parametrize(("conninfo", "url"), [
    ("host=db.example port=5433 user=gear password='a b' dbname=jobs",
     "postgresql://gear:a%20b@db.example:5433/jobs"),
    ("host=127.0.0.1 user=postgres dbname=test sslmode=require connect_timeout=3",
     "postgresql://postgres@127.0.0.1/test?sslmode=require&connect_timeout=3"),
    ("host=/var/run/postgresql port=5432 user=gearman dbname=gearman",
     "postgresql://gearman@/gearman?host=%2Fvar%2Frun%2Fpostgresql&port=5432"),
    ("user=u@x password='p:w/\\'x' dbname=d", "postgresql://u%40x:p%3Aw%2F%27x@/d"),
    ("", "postgresql:///"),
    ("postgresql://a@b/c?sslmode=verify-full", "postgresql://a@b/c?sslmode=verify-full"),
])
def test_conninfo_becomes_a_url_keeping_every_key(conninfo: str, url: str) -> None:
    def parts(text: str) -> tuple[str, dict[str, list[str]]]:
        base, _, query = text.partition("?")
        return base, parse_qs(query)  # libpq decides the order of the keys

    assert parts(conninfo_to_url(conninfo)) == parts(url)


@needs_psycopg
def test_malformed_conninfo_says_why() -> None:
    with pytest.raises(ConfigError, match=r"--libpq-conninfo: .*bogus"):
        conninfo_to_url("bogus")


# ------------------------------------------------------------------ table names, prefixes


@pytest.mark.parametrize(("argv", "url"), [
    (["-q", "libsqlite3", "--libsqlite3-db", "/tmp/q.db", "--libsqlite3-table", "jobs"],
     "sqlite:////tmp/q.db?table=jobs"),
    (["-q", "libsqlite3", "--libsqlite3-table", "jobs"], "sqlite?table=jobs"),
    pytest.param(["-q", "postgres", "--libpq-conninfo", "host=h dbname=d sslmode=disable",
      "--libpq-table", "gq"], "postgresql://h/d?sslmode=disable&table=gq",
                 marks=needs_psycopg),
    (["-q", "mysql", "--mysql-table", "gq"], "mysql://root@localhost:3306/gearman?table=gq"),
    (["-q", "redis", "--redis-prefix", "g_"], "redis://127.0.0.1:6379?prefix=g_"),
    (["-q", "libmemcached", "--libmemcached-prefix", "g_"],
     "memcached://127.0.0.1:11211?prefix=g_"),
    (["-q", "redis"], "redis://127.0.0.1:6379"),
])
def test_queue_table_and_prefix_options_go_into_the_store_url(argv: list[str],
                                                              url: str) -> None:
    assert store_url(build_parser().parse_args(["serve", *argv])) == url
