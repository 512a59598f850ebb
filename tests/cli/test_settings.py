"""``gearshift serve --config FILE.toml``, ``GEARSHIFT_*`` variables and ``--print-config``:
every serve option is a key, command line > environment > file > default, and bad input
fails at startup naming the file and line (or the variable)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gearshift.cli import build_parser
from gearshift.cli._settings import env_names, settings
from gearshift.testing import ServerProcess, free_port

from .conftest import gearshift

#: Variables a developer's shell might hold that would change what these tests see.
_CLEAN = {"GEARSHIFT_CONFIG": "", "GEARMAND_PORT": ""}


def _print_config(*args: str, env: dict[str, str] | None = None,
                  ) -> subprocess.CompletedProcess[bytes]:
    return gearshift(["serve", "--print-config", *args], env={**_CLEAN, **(env or {})})


def _lines(output: bytes) -> dict[str, str]:
    """key -> its whole printed line (commented-out keys included)."""
    found = {}
    for line in output.decode().splitlines():
        body = line.lstrip("# ")
        if " = " in body:
            found[body.split(" = ", 1)[0]] = line
    return found


def _serve_parser() -> argparse.ArgumentParser:
    return build_parser().parse_args(["serve"]).serve_parser  # type: ignore[no-any-return]


def test_every_serve_long_option_is_a_key_and_a_variable() -> None:
    keys = settings(_serve_parser())
    for option in ("max-queue", "keep-results", "store", "listen", "port", "data-dir",
                   "verbose", "daemon", "retry", "http-port", "ssl-key", "libpq-conninfo"):
        assert option in keys
    assert not {"help", "version", "config", "print-config", "config-file"} & set(keys)
    assert env_names("data-dir")[0] == "GEARSHIFT_DATA_DIR"
    assert env_names("port") == ("GEARSHIFT_PORT", "GEARMAND_PORT")


def test_a_new_flag_is_a_key_without_touching_the_settings_module() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brand-new-limit", type=int, default=3)
    parser.add_argument("-q", action="store_true")  # no long name: not a key
    assert list(settings(parser)) == ["brand-new-limit"]


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "gearshift.toml"
    config.write_text('# comment\nport = 5001\nstore = "memory"\n\n'
                      'keep-results = "2h"\nmax-queue = ["resize=10", "*=1,2,3"]\n'
                      "allow-shutdown = true\n")
    result = _print_config("--config", str(config), "--port", "5003",
                           env={"GEARSHIFT_PORT": "5002", "GEARSHIFT_STORE": "sqlite",
                                "GEARSHIFT_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 0, result.stderr
    lines = _lines(result.stdout)
    assert lines["port"].startswith("port = 5003 ")
    assert lines["port"].endswith("# flag")
    assert lines["store"].startswith('store = "sqlite"')
    assert lines["store"].endswith("# env GEARSHIFT_STORE")
    assert lines["keep-results"].startswith("keep-results = 7200.0")
    assert lines["keep-results"].endswith(f"# {config}:5")
    assert lines["max-queue"].startswith('max-queue = ["resize=10,10,10", "*=1,2,3"]')
    assert lines["allow-shutdown"].endswith(f"# {config}:7")
    assert lines["data-dir"].startswith(f'data-dir = "{tmp_path / "d"}"')
    assert lines["data-dir"].endswith("# env GEARSHIFT_DATA_DIR")
    assert lines["backlog"].startswith("backlog = 1024")
    assert lines["backlog"].endswith("default")
    # an unset option is a comment, with the value the server derives when there is one
    assert lines["job-handle-prefix"].startswith('# job-handle-prefix = "H:')
    assert lines["user"].startswith("# user = (not set)")


def test_printed_config_is_a_config_file_that_gives_the_same_settings(tmp_path: Path) -> None:
    first = _print_config("--store", "memory", "--retry", "resize=5:2s:10m", "-L", "::1",
                          "--keep-results", "30m", "--verbose", "info", "--daemon")
    assert first.returncode == 0, first.stderr
    values = tomllib.loads(first.stdout.decode())
    assert values["retry"] == ["resize=5:2s:600s"]
    assert values["daemon"] is True
    saved = tmp_path / "saved.toml"
    saved.write_bytes(first.stdout)
    second = _print_config("--config", str(saved))
    assert second.returncode == 0, second.stderr
    assert tomllib.loads(second.stdout.decode()) == values


def test_gearmand_config_file_sits_between_command_line_and_environment(
        tmp_path: Path) -> None:
    conf = tmp_path / "gearmand.conf"
    conf.write_text("# gearmand style\n--port=5010\nverbose=INFO\n")
    result = _print_config("--config-file", str(conf), "--verbose", "DEBUG",
                           env={"GEARSHIFT_PORT": "5011", "GEARSHIFT_BACKLOG": "7"})
    lines = _lines(result.stdout)
    assert lines["port"].startswith("port = 5010")
    assert lines["port"].endswith(f"{conf}:2")
    assert lines["verbose"].startswith('verbose = "DEBUG"')
    assert lines["backlog"].endswith("# env GEARSHIFT_BACKLOG")


def test_gearmand_port_variable_still_counts_below_gearshift_port() -> None:
    assert _lines(_print_config(env={"GEARMAND_PORT": "5020"}).stdout)["port"].endswith(
        "# env GEARMAND_PORT")
    both = _print_config(env={"GEARMAND_PORT": "5020", "GEARSHIFT_PORT": "5021"})
    assert _lines(both.stdout)["port"].startswith("port = 5021")


def test_list_and_flag_variables() -> None:
    result = _print_config(env={"GEARSHIFT_LISTEN": "127.0.0.1 ::1",
                                "GEARSHIFT_MAX_QUEUE": "a=1,2,3", "GEARSHIFT_DAEMON": "yes",
                                "GEARSHIFT_SYSLOG": "off"})
    values = tomllib.loads(result.stdout.decode())
    assert values["listen"] == ["127.0.0.1", "::1"]
    assert values["max-queue"] == ["a=1,2,3"]
    assert (values["daemon"], values["syslog"]) == (True, False)


def test_passwords_are_not_printed(tmp_path: Path) -> None:
    result = _print_config(env={"GEARSHIFT_STORE": "postgresql://gear:s3cret@db/jobs",
                                "GEARSHIFT_REDIS_PASSWORD": "s3cret"})
    assert b"s3cret" not in result.stdout
    assert 'store = "postgresql://gear:***@db/jobs"' in result.stdout.decode()
    assert 'redis-password = "***"' in result.stdout.decode()


@pytest.mark.parametrize(("content", "message"), [
    ("port = 4730\nmax-queue = [\n", ":3: not valid TOML"),
    ("port = 4730\nstore = memory\nbacklog = 1\n", ":2: not valid TOML"),
    ("port = 4730\n\nno-such-option = 1\n", ":3: unknown key 'no-such-option'"),
    ('backlog = 5\nport = "many"\n', ":2: port: 'many' is not a valid int"),
    ('daemon = "yes"\n', ":1: daemon: expected true or false"),
    ("listen = { a = 1 }\n", ":1: listen: expected a string or a list of strings"),
    ("store = true\n", ":1: store: expected a string or a number"),
    ('keep-results = "soon"\n', ":1: keep-results: 'soon' is not a duration"),
    ('verbose = "LOUD"\n', ":1: verbose: 'LOUD' is not one of"),
    ("config-file = '/etc/gearmand.conf'\n", ":1: unknown key 'config-file' (a setting"),
])
def test_bad_config_file_fails_naming_file_line_and_key(tmp_path: Path, content: str,
                                                        message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = gearshift(["serve", "--config", str(config), "--store", "memory"], env=_CLEAN)
    assert result.returncode == 1
    assert f"gearshift: {config}{message}" in result.stderr.decode()


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    result = gearshift(["serve", "--config", str(tmp_path / "nope.toml")], env=_CLEAN)
    assert result.returncode == 1
    assert f"--config {tmp_path / 'nope.toml'}: cannot read it" in result.stderr.decode()


@pytest.mark.parametrize(("env", "message"), [
    ({"GEARSHIFT_PORT": "http"}, "env GEARSHIFT_PORT: port: 'http' is not a valid int"),
    ({"GEARSHIFT_DAEMON": "maybe"}, "env GEARSHIFT_DAEMON: expected 1/0"),
])
def test_bad_variable_fails_naming_it(env: dict[str, str], message: str) -> None:
    result = gearshift(["serve", "--store", "memory"], env={**_CLEAN, **env})
    assert result.returncode == 1
    assert message in result.stderr.decode()


class _Serve(ServerProcess):
    """``gearshift serve ARGV`` exactly (no --port of the fixture's own)."""

    name = "gearshift"

    def __init__(self, argv: list[str], port: int, env: dict[str, str]) -> None:
        super().__init__(port=port, env=env)
        self.argv = argv

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gearshift", "serve", *self.argv]


def test_a_server_runs_from_a_config_file_and_the_environment_overrides_it(
        tmp_path: Path) -> None:
    file_port, env_port = free_port(), free_port()
    config = tmp_path / "gearshift.toml"
    config.write_text(f'listen = ["127.0.0.1"]\nport = {file_port}\nstore = "memory"\n')
    with _Serve([], env_port, {**_CLEAN, "GEARSHIFT_CONFIG": str(config),
                              "GEARSHIFT_PORT": str(env_port)}):
        with socket.create_connection(("127.0.0.1", env_port), timeout=5) as sock:
            sock.sendall(b"version\n")
            assert sock.recv(64).startswith(b"OK")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", file_port), timeout=1).close()
