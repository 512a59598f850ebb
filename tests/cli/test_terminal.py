"""What the CLI shows on a real terminal (rich tables, with and without the ``cli`` extra)
against what it prints when piped (the plain text scripts read), and shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gearshift.client import AdminClient
from gearshift.testing import ServerProcess

from .conftest import gearshift, on_terminal


def _hp(server: ServerProcess) -> list[str]:
    return ["-h", server.host, "-p", str(server.port)]


@pytest.fixture
def registered(server: ServerProcess) -> Iterator[None]:
    """A function ``term_resize`` that shows in --status (admin create function)."""
    with AdminClient(server.address) as admin:
        admin.create_function("term_resize")
    yield
    with AdminClient(server.address) as admin:
        admin.drop_function("term_resize")


def _status_lines(output: bytes) -> list[bytes]:
    return [line for line in output.splitlines() if b"term_resize" in line]


def test_admin_table_is_rich_on_a_terminal_and_plain_when_piped(
        server: ServerProcess, registered: None) -> None:
    piped = gearshift(["admin", *_hp(server), "--status"])
    status, _, drawn = on_terminal(["admin", *_hp(server), "--status"])
    _, _, plain_tty = on_terminal(["admin", *_hp(server), "--status"], without_rich=True)
    assert piped.returncode == 0
    assert status == 0
    # piped: gearadmin-like aligned text, no escapes, no rules (scripts parse it)
    assert piped.stdout.split(b"\n")[0].split() == [b"FUNCTION", b"TOTAL", b"RUNNING",
                                                     b"WORKERS"]
    assert b"\x1b" not in piped.stdout
    assert b"\xe2\x94\x80" not in piped.stdout
    assert _status_lines(piped.stdout)
    # a terminal with rich: a header rule drawn with box characters, same row contents
    assert b"\xe2\x94\x80" in drawn  # the rule under the header
    row = _status_lines(drawn)[0].split()
    assert row[-3:] == _status_lines(piped.stdout)[0].split()[-3:]
    # a terminal without rich: the plain table, as piped (\r\n from the terminal)
    assert plain_tty.replace(b"\r\n", b"\n") == piped.stdout


def test_admin_json_never_uses_rich(server: ServerProcess) -> None:
    _, _, drawn = on_terminal(["admin", *_hp(server), "--status", "--json"])
    assert drawn.lstrip().startswith(b"{")
    assert b"\xe2\x94" not in drawn


def test_shell_completion_lists_serve_options() -> None:
    pytest.importorskip("argcomplete")
    read_fd, write_fd = os.pipe()
    line = "gearshift serve --max-q"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line))}
    # argcomplete answers on fd 8 and may debug on fd 9, as the shell hook arranges
    proc = subprocess.Popen(["bash", "-c", f'exec "$@" 8>&{write_fd} 9>&2', "_",
                             sys.executable, "-m", "gearshift"], env=env,
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.read()
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else b""
    if proc.stderr:
        proc.stderr.close()
    assert answer.split() == [b"--max-queue"]
