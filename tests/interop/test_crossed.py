"""Every client library calls a worker written in every language, through one server.

Gearman's promise is that clients and workers need not share a language; this module
proves it for each (client, worker) pair of the installed libraries, against gearmand and
against gearshift. One echo worker per language serves the whole module; each answers
``<lang>:`` + the upper-cased workload, so a reply also says which worker ran the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gearshift.testing import ServerProcess

from ._peers import LANGS, Worker, client, wait_for_workers, worker


@pytest.fixture(scope="module")
def echo_funcs(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[dict[str, str]]:
    """One echo worker per language, registered for ``echo_<lang>``."""
    tmp = tmp_path_factory.mktemp("echo")
    workers = [Worker(lang, server, f"echo_{lang}", "echo", tmp) for lang in LANGS]
    try:
        for lang in LANGS:
            wait_for_workers(server, f"echo_{lang}", 1)
        yield {lang: f"echo_{lang}" for lang in LANGS}
    finally:
        for w in workers:
            w.close()


@pytest.mark.parametrize("worker_lang", LANGS)
@pytest.mark.parametrize("client_lang", LANGS)
def test_sync_call(server: ServerProcess, echo_funcs: dict[str, str], client_lang: str,
                   worker_lang: str) -> None:
    """A foreground normal-priority call from one language is answered by another."""
    workload = f"hello from {client_lang}"
    res = client(client_lang, server, "do", echo_funcs[worker_lang], "normal", workload)
    assert res == {"status": "complete", "result": f"{worker_lang}:{workload.upper()}"}


@pytest.mark.parametrize("prio", ["high", "low"])
@pytest.mark.parametrize("lang", LANGS)
def test_sync_priority_call(server: ServerProcess, echo_funcs: dict[str, str], lang: str,
                            prio: str) -> None:
    """doHigh / doLow (SUBMIT_JOB_HIGH / _LOW) round trips with the same language's worker."""
    res = client(lang, server, "do", echo_funcs[lang], prio, f"{prio} call")
    assert res == {"status": "complete", "result": f"{lang}:{prio.upper()} CALL"}


@pytest.mark.parametrize("lang", LANGS)
def test_large_payload(server: ServerProcess, echo_funcs: dict[str, str], lang: str) -> None:
    """A 100 kB workload and result (many TCP reads; under Linux's 128 kB argv limit)."""
    workload = "".join(chr(97 + i % 26) for i in range(100_000))
    res = client(lang, server, "do", echo_funcs[lang], "normal", workload)
    assert res["status"] == "complete"
    assert res["result"] == f"{lang}:{workload.upper()}"


@pytest.mark.parametrize("lang", LANGS)
def test_concurrent_tasks(server: ServerProcess, echo_funcs: dict[str, str], lang: str,
                          tmp_path: Path) -> None:
    """Several foreground tasks from one client at once (addTask+runTasks, task sets).

    The worker is gear's (Python) for every client, so this is also a crossed pair.
    """
    res = client(lang, server, "tasks", echo_funcs["gear"], "one", "two", "three")
    if lang == "cli":
        # gearman sends each argument as a job and prints the results back to back.
        assert res == {"status": "complete", "stdout": "gear:ONEgear:TWOgear:THREE"}
    else:
        assert res == {"results": ["gear:ONE", "gear:TWO", "gear:THREE"]}


#: Libraries whose client reports WORK_DATA and WORK_STATUS as ordered events.
EVENT_CLIENTS = ("php", "perl", "gear", "node")
STREAM_PAIRS = [("gearshift", w) for w in ("php", "perl", "gear", "pygearman", "node")] + [
    (c, "gearshift") for c in EVENT_CLIENTS]


@pytest.mark.parametrize(("client_lang", "worker_lang"), STREAM_PAIRS)
def test_streaming_with_our_library(server: ServerProcess, func: str, client_lang: str,
                                    worker_lang: str, tmp_path: Path) -> None:
    """Our client receives other libraries' WORK_DATA/STATUS/WARNING in order, and vice versa."""
    with worker(worker_lang, server, func, "stream", tmp_path):
        res = client(client_lang, server, "stream", func, "go")
    assert res["status"] == "complete", res
    assert res["events"] == [["data", "chunk1"], ["status", 1, 2], ["warning", "careful"],
                             ["data", "chunk2"], ["status", 2, 2]]
    assert res["result"] == "done"
