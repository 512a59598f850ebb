"""Drive third-party Gearman clients and workers as separate processes, one contract for all.

Every language has a *peer*: a small program under ``peers/`` written against that
language's own Gearman library, with the same command line::

    <peer> worker HOST PORT FUNC MODE LOGFILE [TIMEOUT]
    <peer> client HOST PORT OP FUNC ARGS...

so a scenario is written once and run for PHP, Perl, Node and Python alike. Workers append
``job <workload>`` to LOGFILE when a job starts (the test's only window into a worker) and
reply according to MODE:

=========  ==============================================================================
echo       complete with ``<lang>:`` + the workload upper-cased (tells who ran the job)
stream     DATA chunk1, STATUS 1/2, WARNING careful, DATA chunk2, STATUS 2/2, result done
hold       WORK_STATUS 1/2, then wait until the file named by the workload exists
fail       WORK_FAIL
exception  WORK_EXCEPTION ``boom``
=========  ==============================================================================

Clients print one JSON object: ``do PRIO WORKLOAD [UNIQUE]`` and ``stream WORKLOAD`` give
``{"status": complete|fail|exception, "result"..., "events": [...]}``, ``bg PRIO WORKLOAD
[UNIQUE]`` gives ``{"handle"}``, ``status HANDLE`` gives ``{"known", "running", "num",
"den"}``, ``tasks W1 W2 ...`` (concurrent tasks in one client) gives ``{"results"}``,
``shared UNIQUE WORKLOAD FILE`` (foreground, writes the job handle to FILE as soon as
JOB_CREATED arrives) gives ``{"status", "result", "handle"}`` and
``admin`` gives ``{"status": {func: [queued, running, workers]}, "workers": [[func...]]}``.

The libgearman command-line tools have no such program; :func:`cli_client` and
:func:`cli_worker_command` translate the contract into ``gearman`` invocations.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from gearshift.testing import ServerProcess

HERE: Final = Path(__file__).resolve().parent
PEERS: Final = HERE / "peers"
#: npm packages are installed here by scripts/install_interop.sh (git-ignored).
NODE_MODULES: Final = HERE / ".node" / "node_modules"

#: Every language that acts as client and as worker, in table order.
#: ``gearshift`` is this project's own library (src/gearshift/client), crossed with all.
LANGS: Final = ("cli", "php", "perl", "gear", "pygearman", "node", "gearshift")

#: How long a peer may take for one operation. Generous: two shared cores.
CLIENT_TIMEOUT: Final = 45.0
READY_TIMEOUT: Final = 20.0


class PeerError(AssertionError):
    """A peer process failed or printed something that is not the contract's JSON."""


def _peer_prefix(lang: str) -> list[str]:
    if lang == "php":
        return ["php", str(PEERS / "php_peer.php")]
    if lang == "perl":
        return ["perl", str(PEERS / "perl_peer.pl")]
    if lang == "gear":
        return [sys.executable, str(PEERS / "gear_peer.py")]
    if lang == "pygearman":
        return [sys.executable, str(PEERS / "pygearman_peer.py")]
    if lang == "node":
        return ["node", str(PEERS / "node_peer.js")]
    if lang == "gearshift":
        return [sys.executable, str(PEERS / "gearshift_peer.py")]
    raise ValueError(f"no peer program for language {lang!r}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["NODE_PATH"] = str(NODE_MODULES)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --------------------------------------------------------------------------- admin


def admin(server: ServerProcess, command: str, timeout: float = 5.0) -> list[str]:
    """Send one text admin command and return the reply lines (list replies without '.')."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(command.encode() + b"\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            text = data.decode(errors="replace")
            if text.startswith(("OK", "ERR")) and text.endswith("\n"):
                return [text.strip()]
            if text == ".\n" or text.endswith("\n.\n"):
                return [line.rstrip("\r") for line in text.split("\n")[:-2]]
    raise PeerError(f"admin {command!r}: connection closed after {data!r}")


def function_status(server: ServerProcess, func: str) -> tuple[int, int, int] | None:
    """(queued-or-running total, running, available workers) for ``func`` from ``status``."""
    for line in admin(server, "status"):
        fields = line.split("\t")
        if fields[0] == func and len(fields) == 4:
            return int(fields[1]), int(fields[2]), int(fields[3])
    return None


def wait_until(predicate: Any, what: str, timeout: float = READY_TIMEOUT) -> None:
    """Poll ``predicate()`` every 20 ms until true; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise PeerError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for_workers(server: ServerProcess, func: str, count: int,
                     timeout: float = READY_TIMEOUT) -> None:
    """Block until ``status`` shows at least ``count`` workers registered for ``func``."""
    def ready() -> bool:
        st = function_status(server, func)
        return st is not None and st[2] >= count
    wait_until(ready, f"{count} worker(s) for {func}", timeout)


# --------------------------------------------------------------------------- workers


def cli_worker_command(host: str, port: int, func: str, mode: str, logfile: str) -> list[str]:
    """``gearman -w`` running a shell command per job, emulating a peer worker mode."""
    log = f'printf "job %s\\n" "$w" >> {shlex.quote(logfile)}'
    scripts = {
        "echo": f'w=$(cat); {log}; printf "cli:"; printf "%s" "$w" | tr a-z A-Z',
        # -n: every output line of the command is sent as WORK_DATA.
        "stream": f'w=$(cat); {log}; printf "chunk1\\nchunk2\\n"',
        "hold": f'w=$(cat); {log}; i=0; while [ ! -e "$w" ] && [ $i -lt 1200 ]; do '
                f'sleep 0.05; i=$((i+1)); done; printf released',
        "fail": f'w=$(cat); {log}; exit 3',
    }
    if mode not in scripts:
        raise ValueError(f"the gearman CLI worker cannot do mode {mode!r}")
    flags = ["-n"] if mode == "stream" else []
    return ["gearman", "-w", "-h", host, "-p", str(port), "-f", func, *flags,
            "--", "sh", "-c", scripts[mode]]


class Worker:
    """A worker peer in its own process group; ``kill()`` simulates a crash mid-job."""

    def __init__(self, lang: str, server: ServerProcess, func: str, mode: str,
                 tmp: Path, timeout: int | None = None) -> None:
        self.lang = lang
        self.func = func
        self.logfile = tmp / f"worker-{lang}-{func}-{mode}-{time.monotonic_ns()}.log"
        self.logfile.touch()
        if lang == "cli":
            if timeout is not None:
                raise ValueError("the gearman CLI worker cannot register with a timeout")
            cmd = cli_worker_command(server.host, server.port, func, mode, str(self.logfile))
        else:
            cmd = [*_peer_prefix(lang), "worker", server.host, str(server.port), func, mode,
                   str(self.logfile)]
            if timeout is not None:
                cmd.append(str(timeout))
        self.stderr_path = self.logfile.with_suffix(".stderr")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env=_env(), start_new_session=True)

    def jobs(self) -> list[str]:
        """Workloads this worker has started, in order."""
        lines = self.logfile.read_text(errors="replace").splitlines()
        return [line[4:] for line in lines if line.startswith("job ")]

    def wait_for_jobs(self, count: int, timeout: float = READY_TIMEOUT) -> list[str]:
        wait_until(lambda: len(self.jobs()) >= count or self.proc.poll() is not None,
                   f"{self.lang} worker to start {count} job(s)", timeout)
        if len(self.jobs()) < count:
            raise PeerError(f"{self.lang} worker exited: {self.stderr()}")
        return self.jobs()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (it is the group leader we started)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def worker(lang: str, server: ServerProcess, func: str, mode: str, tmp: Path,
           timeout: int | None = None, ready: bool = True,
           ready_timeout: float = READY_TIMEOUT) -> Iterator[Worker]:
    """Start a worker peer, wait until the server lists it for ``func``, stop it after."""
    before = function_status(server, func)
    w = Worker(lang, server, func, mode, tmp, timeout)
    try:
        if ready:
            wait_for_workers(server, func, (before[2] if before else 0) + 1, ready_timeout)
        yield w
    finally:
        w.close()


# --------------------------------------------------------------------------- clients


def _parse(lang: str, proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError) as exc:
        raise PeerError(f"{lang} client exited {proc.returncode} without JSON:\n"
                        f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}") from exc
    return result


_CLI_PRIO: Final = {"normal": [], "high": ["-I"], "low": ["-L"]}


def cli_client(server: ServerProcess, op: str, func: str, *args: str) -> dict[str, Any]:
    """The contract's client operations done with libgearman's ``gearman`` tool."""
    base = ["gearman", "-h", server.host, "-p", str(server.port), "-f", func]
    if op in ("do", "bg"):
        prio, workload, *rest = args
        cmd = [*base, *_CLI_PRIO[prio]]
        if rest:
            cmd += ["-u", rest[0]]
        if op == "bg":
            cmd += ["-b", "-v"]
        proc = subprocess.run([*cmd, "--", workload], capture_output=True, text=True,
                              timeout=CLIENT_TIMEOUT, env=_env())
        if op == "bg":
            handle = proc.stdout.strip().removeprefix("Task created: ")
            return {"handle": handle if proc.returncode == 0 else None}
        if proc.returncode != 0:
            return {"status": "fail", "stderr": proc.stderr.strip()}
        return {"status": "complete", "result": proc.stdout}
    if op in ("stream", "tasks"):
        workloads = args if op == "tasks" else args[:1]
        proc = subprocess.run([*base, "--", *workloads], capture_output=True, text=True,
                              timeout=CLIENT_TIMEOUT, env=_env())
        return {"status": "complete" if proc.returncode == 0 else "fail",
                "stdout": proc.stdout}
    raise ValueError(f"the gearman CLI has no client operation {op!r}")


def client(lang: str, server: ServerProcess, op: str, func: str, *args: str) -> dict[str, Any]:
    """Run one client operation in a fresh process of ``lang`` and return its JSON."""
    if lang == "cli":
        return cli_client(server, op, func, *args)
    cmd = [*_peer_prefix(lang), "client", server.host, str(server.port), op, func, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                          env=_env(), stdin=subprocess.DEVNULL)
    return _parse(lang, proc)


class BackgroundClient:
    """A client operation left running (it blocks on a job the test controls)."""

    def __init__(self, lang: str, server: ServerProcess, op: str, func: str,
                 *args: str) -> None:
        self.lang = lang
        if lang == "cli":
            prio, workload = args[0], args[1]
            cmd = ["gearman", "-h", server.host, "-p", str(server.port), "-f", func,
                   *_CLI_PRIO[prio], "--", workload]
        else:
            cmd = [*_peer_prefix(lang), "client", server.host, str(server.port), op, func,
                   *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_env(),
                                     start_new_session=True)

    def result(self, timeout: float = CLIENT_TIMEOUT) -> dict[str, Any]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise PeerError(f"{self.lang} client did not finish in {timeout:.0f}s") from None
        if self.lang == "cli":
            if self.proc.returncode != 0:
                return {"status": "fail", "stderr": err}
            return {"status": "complete", "result": out}
        return _parse(self.lang, subprocess.CompletedProcess([], self.proc.returncode,
                                                             out, err))

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()


def supports(lang: str, feature: str) -> bool:
    """Whether ``lang``'s library offers ``feature`` at all (absent features are n/a)."""
    return feature not in UNSUPPORTED.get(lang, {})


#: Features a library does not have, with the reason shown in docs/interop.md.
UNSUPPORTED: Final[dict[str, dict[str, str]]] = {
    "cli": {
        "status": "the gearman tool cannot query a job's status (gearadmin covers admin)",
        "worker-status": "a gearman -w command cannot send WORK_STATUS",
        "exception": "a gearman -w command cannot send WORK_EXCEPTION",
        "can-do-timeout": "gearman -w has no per-function timeout option",
        "admin": "covered by gearadmin in test_gearadmin.py",
        "created": "the gearman tool does not report when a foreground job was accepted",
    },
    "php": {"admin": "the PHP extension has no admin-protocol API"},
    "pygearman": {"can-do-timeout": "GearmanWorker.register_task has no timeout (no "
                                    "CAN_DO_TIMEOUT)"},
}
