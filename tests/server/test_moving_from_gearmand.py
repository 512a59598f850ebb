"""docs/operations.md's "Moving from gearmand" checklist, walked through with a real gearmand:
its SQLite queue gets background jobs, gearmand stops, the checklist's ``gearshift import``
lines run as printed, the unit's ExecStart starts gearshift with Debian's PARAMS, and a
worker runs every job. Only paths and the port differ from the document."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from gearshift.testing import GearmandServer, gearmand_path

from .test_gearmand_options import _killed_at_end

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
#: Debian's /etc/default/gearman-job-server PARAMS (used when that file is absent).
DEBIAN_PARAMS = ("--listen=localhost --daemon "
                 "--log-file=/var/log/gearman-job-server/gearmand.log")
JOBS = 20


def _checklist() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Moving from gearmand\n")
    return text[start:text.index("\n### gearmand's command line", start)]


def _blocks(section: str, language: str) -> list[str]:
    """The code blocks of ``language``, unindented (they sit in list items)."""
    return ["\n".join(line.strip() for line in block.splitlines())
            for block in re.findall(rf"```{language}\n(.*?)```", section, re.S)]


def _debian_params() -> str:
    default = Path("/etc/default/gearman-job-server")
    if default.exists():
        found = re.search(r'^PARAMS="(.*?)"', default.read_text(), re.S | re.M)
        if found:
            return " ".join(found.group(1).replace("\\\n", " ").split())
    return DEBIAN_PARAMS


def _gearshift(argv: list[str], env: dict[str, str] | None = None,
               stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gearshift", *argv], capture_output=True,
                          input=stdin, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.gearmand
@pytest.mark.timeout(180)
def test_moving_from_gearmand_checklist(tmp_path: Path) -> None:
    if gearmand_path() is None:
        pytest.skip("gearmand is not installed (apt-get install gearman-job-server)")
    section = _checklist()
    paths = {"/var/lib/gearman/gearmand.db": str(tmp_path / "gearmand.db"),
             "/var/lib/gearshift": str(tmp_path / "gearshift"),
             "/run/gearman/gearmand.pid": str(tmp_path / "gearmand.pid"),
             "/var/log/gearman-job-server/gearmand.log": str(tmp_path / "gearmand.log")}

    def local(text: str) -> str:
        for doc_path, here in paths.items():
            text = text.replace(doc_path, here)
        return text

    # gearmand with a SQLite queue gets background jobs that no worker takes, then stops.
    payloads = [f"photo-{n}".encode() for n in range(JOBS)]
    with GearmandServer(extra_args=["-q", "libsqlite3", "--libsqlite3-db",
                                    paths["/var/lib/gearman/gearmand.db"]]) as gearmand:
        port = gearmand.port
        queued = _gearshift(["submit", "-h", gearmand.host, "-p", str(port), "-b", "-N",
                             "-f", "move_resize"], stdin=b"".join(p + b"\n" for p in payloads))
        assert queued.returncode == 0, queued.stderr

    # "Count, then import the queue": the checklist's gearshift lines, as printed.
    commands = [line for line in _blocks(section, "sh")[0].splitlines()
                if line.startswith("gearshift ")]
    assert len(commands) == 2, commands
    counted = _gearshift(shlex.split(local(commands[0]))[1:])
    assert counted.returncode == 0, counted.stderr
    assert counted.stdout.startswith(f"{JOBS} jobs in ".encode())
    imported = _gearshift(shlex.split(local(commands[1]))[1:])
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(f"imported {JOBS} jobs".encode())

    # "Point the unit at gearshift": its ExecStart with Debian's PARAMS (gearmand's queue
    # options removed, as the checklist says) and the Environment= line.
    unit = _blocks(section, "ini")[0]
    exec_start = next(line.split("=", 1)[1] for line in unit.splitlines()
                      if line.startswith("ExecStart=") and line != "ExecStart=")
    env = dict(line.split("=", 1)[1].split("=", 1) for line in unit.splitlines()
               if line.startswith("Environment="))
    params = _debian_params() + f" --port={port}"  # a free port instead of 4730
    argv = shlex.split(local(exec_start.replace("$PARAMS", params)))
    assert argv[:2] == ["/usr/local/bin/gearshift", "serve"]
    pid_file = Path(paths["/run/gearman/gearmand.pid"])
    with _killed_at_end(pid_file):  # the daemon is not our child
        started = _gearshift(argv[1:], env={k: local(v) for k, v in env.items()})
        assert started.returncode == 0, started.stderr  # Type=forking: it listens now
        assert int(pid_file.read_text()) > 0
        banner = Path(paths["/var/log/gearman-job-server/gearmand.log"]).read_text()
        assert f"data dir {paths['/var/lib/gearshift']}" in banner

        # "See the jobs run": the imported jobs are queued, a worker drains them.
        status = _gearshift(["admin", "-h", "localhost", "-p", str(port), "--status"])
        assert re.search(rf"^move_resize\s+{JOBS}\s+0\s+0$", status.stdout.decode(), re.M), \
            status.stdout
        ran = tmp_path / "ran.txt"
        worker = _gearshift(["work", "-h", "localhost", "-p", str(port), "-f", "move_resize",
                             "-c", str(JOBS), "--", "sh", "-c", f"cat >> {ran}; echo >> {ran}"])
        assert worker.returncode == 0, worker.stderr
        assert sorted(ran.read_bytes().split()) == sorted(payloads)
        status = _gearshift(["admin", "-h", "localhost", "-p", str(port), "--status"])
        assert re.search(r"^move_resize\s+0\s+0\s+\d+$", status.stdout.decode(), re.M), \
            status.stdout
