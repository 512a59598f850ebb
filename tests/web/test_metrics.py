"""``/metrics``: Prometheus' own parser reads it, ``promtool check metrics`` finds nothing
to complain about, and the counts follow the jobs a real worker runs."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gearshift import Client, Priority
from gearshift.client import JobFailed

from .conftest import HttpServer, call, working


def scrape(server: HttpServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value."""
    reply = call(server.http_port, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def fn(name: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"function": name, **labels}.items()))


def _fail(job: object) -> bytes:
    raise RuntimeError("no")


def test_counts_follow_the_jobs(server: HttpServer, fname: Callable[[str], str]) -> None:
    ok, bad, idle = fname("ok"), fname("bad"), fname("idle")
    with Client([server.address], timeout=10) as client:
        for i in range(3):
            client.submit_background(idle, b"%d" % i)
        client.submit_background(idle, b"high", priority=Priority.HIGH)
        with working(server.address, {ok: lambda job: job.data, bad: _fail}):
            assert [client.submit(ok, b"%d" % i) for i in range(5)] == \
                [b"%d" % i for i in range(5)]
            with pytest.raises(JobFailed):
                client.submit(bad, b"x")
            during = scrape(server)
        after = scrape(server)
    assert during["gearshift_jobs_submitted_total", fn(ok)] == 5
    assert during["gearshift_jobs_completed_total", fn(ok)] == 5
    assert during["gearshift_jobs_failed_total", fn(bad)] == 1
    assert during["gearshift_jobs_completed_total", fn(bad)] == 0
    assert during["gearshift_function_workers", fn(ok)] == 1
    assert after["gearshift_function_workers", fn(ok)] == 0
    assert during["gearshift_jobs_queued", fn(idle, priority="normal")] == 3
    assert during["gearshift_jobs_queued", fn(idle, priority="high")] == 1
    assert during["gearshift_jobs_queued", fn(idle, priority="low")] == 0
    assert during["gearshift_jobs_submitted_total", fn(idle)] == 4
    assert during["gearshift_workers", ()] >= 1
    assert during["gearshift_connections", ()] >= 2
    assert during["gearshift_uptime_seconds", ()] > 0
    # Every job that ran was timed: 5 completed and 1 failed on their workers.
    assert during["gearshift_job_queue_wait_seconds_count", fn(ok)] == 5
    assert during["gearshift_job_run_seconds_count", fn(ok)] == 5
    assert during["gearshift_job_run_seconds_count", fn(bad)] == 1
    assert during["gearshift_job_run_seconds_bucket", fn(bad, le="+Inf")] == 1
    assert during["gearshift_job_run_seconds_bucket", fn(ok, le="3600.0")] == 5
    assert 0 <= during["gearshift_job_run_seconds_sum", fn(ok)] < 10
    assert ("gearshift_job_queue_wait_seconds_count", fn(idle)) not in during  # none ran
    info = [dict(labels) for name, labels in during if name == "gearshift_build_info"]
    assert len(info) == 1
    assert info[0]["build"] in ("mypyc", "pure Python", "partly compiled")


def test_retries_and_dead_letters_are_counted(fname: Callable[[str], str]) -> None:
    name = fname("flaky")
    with HttpServer(extra_args=("--retry", f"{name}=2:0s")) as proc, \
            Client([proc.address], timeout=10) as client, \
            working(proc.address, {name: _fail}):
        client.submit_background(name, b"payload")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            samples = scrape(proc)
            if samples.get(("gearshift_jobs_dead_total", fn(name))) == 1:
                break
            time.sleep(0.05)
        assert samples["gearshift_jobs_dead_total", fn(name)] == 1
        assert samples["gearshift_jobs_retried_total", fn(name)] == 1
        assert samples["gearshift_jobs_failed_total", fn(name)] == 1
        assert samples["gearshift_dead_letters", fn(name)] == 1


def test_store_metrics_and_promtool(fname: Callable[[str], str]) -> None:
    with HttpServer(store="sqlite") as proc, Client([proc.address], timeout=10) as client:
        for i in range(10):
            client.submit_background(fname("stored"), b"%d" % i)
        with working(proc.address, {fname("timed"): lambda job: job.data}):
            client.submit(fname("timed"), b"x")  # histograms in the text promtool checks
        samples = scrape(proc)
        text = call(proc.http_port, "GET", "/metrics").body
    assert samples["gearshift_store_commit_seconds_count", (("store", _store(samples)),)] >= 1
    assert samples["gearshift_store_commit_batch_size_sum", (("store", _store(samples)),)] >= 10
    assert samples["gearshift_store_up", (("store", _store(samples)),)] == 1
    assert samples["gearshift_store_errors_total", (("store", _store(samples)),)] == 0
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; scripts/test.sh "
                    "does)")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == b""


def _store(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
    for name, labels in samples:
        if name == "gearshift_store_up":
            return dict(labels)["store"]
    raise AssertionError("no store metrics")
