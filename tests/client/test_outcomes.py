"""Reading background jobs back (``result``), dead letters and schedules, through the
client and admin libraries, against real gearshift servers started with retry policies.

gearmand has none of this (its admin protocol has no ``result`` command), so these tests
use servers of their own rather than the shared gearshift/gearmand ``server`` fixture;
one test checks that asking gearmand fails cleanly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Callable, Iterator

import pytest

from gearshift.client import (
    AdminClient,
    AdminError,
    AsyncAdminClient,
    AsyncClient,
    AsyncJob,
    AsyncWorker,
    Client,
    GearmanError,
    Job,
    JobOutcome,
    Priority,
    Schedule,
    UnknownJob,
    Worker,
)
from gearshift.client._servers import Selector
from gearshift.testing import GearmandServer, GearshiftServer, ServerProcess, gearmand_path

from .conftest import running

Names = Callable[[str], str]


@pytest.fixture(scope="module")
def keeper() -> Iterator[ServerProcess]:
    """A gearshift server that retries functions named ``*_flaky`` twice, 100 ms apart."""
    with GearshiftServer(extra_args=["--retry", "*_flaky=2:100ms:100ms"]) as proc:
        yield proc


def test_sync_result_queued_then_complete(keeper: ServerProcess, fname: Names) -> None:
    with Client([keeper.address], timeout=10) as client:
        handle = client.submit_background(fname(), b"hello")
        queued = client.result(handle)
        assert (queued.state, queued.done, queued.ok, queued.failed) == ("queued", False,
                                                                         False, False)
        assert queued.handle == handle.decode()
        assert queued.function == fname()
        assert queued.ended is None
        assert queued.submitted
        waited = client.result(handle, wait=0.2)  # nobody runs it: the wait runs out
        assert waited.state == "queued"
        release = threading.Event()

        def upper(job: Job) -> bytes:
            release.wait(10)
            return job.data.upper()

        worker = Worker([keeper.address])
        worker.register(fname(), upper)
        with running(worker):
            while client.result(handle).state != "running":
                pass
            threading.Timer(0.3, release.set).start()  # ends while result() polls
            outcome = client.result(handle, wait=10)
        assert outcome.ok
        assert outcome.done
        assert not outcome.failed
        assert outcome.data == b"HELLO"
        assert outcome.attempts == 1
        assert outcome.reason is None
        assert outcome.started is not None
        assert outcome.ended is not None
        assert JobOutcome.from_json(outcome.to_json()) == outcome
        # another client, that did not submit it, finds it too
        with Client([keeper.address]) as other:
            assert other.result(handle.decode()).data == b"HELLO"


def test_async_result_and_admin(keeper: ServerProcess, fname: Names) -> None:
    async def main() -> None:
        async def shout(job: AsyncJob) -> bytes:
            return job.data + b"!"

        worker = AsyncWorker([keeper.address])
        worker.register(fname(), shout)
        async with AsyncClient([keeper.address], timeout=10) as client:
            handle = await client.submit_background(fname(), b"hey")
            running = asyncio.create_task(worker.run())
            try:
                outcome = await client.result(handle, wait=10)
            finally:
                worker.stop()
                await asyncio.wait_for(running, 10)
        assert (outcome.state, outcome.data) == ("complete", b"hey!")
        async with AsyncAdminClient(keeper.address) as admin:
            assert (await admin.result(handle)).data == b"hey!"
            with pytest.raises(UnknownJob):
                await admin.result("H:never:1")

    asyncio.run(main())


def test_unknown_and_garbage_handles(keeper: ServerProcess) -> None:
    with Client([keeper.address], timeout=10) as client:
        for handle in ("H:never:404", b"H:never:405", "", "two words", "line\nbreak"):
            with pytest.raises(UnknownJob) as info:
                client.result(handle)
            assert isinstance(info.value, AdminError)
            assert isinstance(info.value, LookupError)
            assert info.value.code == "UNKNOWN_JOB"


def test_failing_job_goes_dead_then_retried(keeper: ServerProcess, fname: Names) -> None:
    function = fname("flaky")
    healthy = threading.Event()

    def flaky(job: Job) -> bytes:
        if not healthy.is_set():
            raise RuntimeError("disk full")
        return b"done " + job.data

    with Client([keeper.address], timeout=10) as client, \
            AdminClient(keeper.address) as admin:
        handle = client.submit_background(function, b"p1", priority=Priority.LOW)
        other = client.submit_background(function, b"p2")
        worker = Worker([keeper.address])
        worker.register(function, flaky)
        with running(worker):
            dead = client.result(handle, wait=10)
            assert client.result(other, wait=10).dead
            assert (dead.state, dead.dead, dead.failed, dead.attempts) == ("dead", True,
                                                                           True, 2)
            assert dead.reason == "RuntimeError: disk full"
            assert dead.reasons == ("RuntimeError: disk full",) * 2
            assert (dead.payload, dead.priority) == (b"p1", Priority.LOW)
            letters = {o.handle: o for o in admin.dead(function)}
            assert set(letters) == {handle.decode(), other.decode()}
            assert letters[handle.decode()] == dead
            assert admin.dead(fname("nothing")) == []
            with pytest.raises(UnknownJob):
                admin.retry_dead("H:never:1")
            healthy.set()
            assert admin.retry_dead(handle) == 1
            again = client.result(handle, wait=10)
            assert (again.state, again.data) == ("complete", b"done p1")
        assert admin.purge_dead(function=function) == 1  # `other` is gone for good
        with pytest.raises(UnknownJob):
            client.result(other)
        with pytest.raises(ValueError, match="exactly one"):
            admin.retry_dead(handle, all=True)
        with pytest.raises(ValueError, match="exactly one"):
            admin.purge_dead()


def test_schedules_add_list_remove(keeper: ServerProcess, fname: Names) -> None:
    # a fixed minute an hour from now: it cannot fire during the test
    slot = (dt.datetime.now() + dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    cron = f"{slot.minute} {slot.hour} * * *"
    with AdminClient(keeper.address) as admin:
        key = admin.add_schedule(fname(), cron, b"\x00payload", unique=fname("u"),
                                 priority=Priority.HIGH)
        mine = [s for s in admin.schedules() if s.key == key]
        assert mine == [Schedule(key, fname(), cron, fname("u"), b"\x00payload",
                                 Priority.HIGH, slot.timestamp(), None)]
        assert Schedule.from_json(mine[0].to_json()) == mine[0]
        with pytest.raises(AdminError) as bad:
            admin.add_schedule(fname(), "61 * * * *")
        assert bad.value.code == "INVALID_ARGUMENTS"
        assert "61" in bad.value.text
        with pytest.raises(ValueError, match="5 fields"):
            admin.add_schedule(fname(), "* * * *")
        with pytest.raises(ValueError, match="one word"):
            admin.add_schedule("two words", cron)
        with pytest.raises(ValueError, match="priority"):
            admin.add_schedule(fname(), cron, priority="urgent")
        admin.remove_schedule(key)
        assert key not in {s.key for s in admin.schedules()}
        with pytest.raises(AdminError) as gone:
            admin.remove_schedule(key)
        assert gone.value.code == "UNKNOWN_SCHEDULE"


def _index_of(unique: str, servers: list[str]) -> int:
    """The server a unique key routes to (the client's consistent hashing)."""
    return Selector(servers).order(unique.encode())[0]


def test_result_asks_the_server_that_issued_the_handle() -> None:
    """Two in-memory servers issue the same handles (``H:host:1``, ...); a client that
    submitted the job asks its own server, others ask each server in order."""
    with GearshiftServer() as first, GearshiftServer() as second:
        pair = [first.address, second.address]
        unique = next(f"key{i}" for i in range(100) if _index_of(f"key{i}", pair) == 1)
        with Client([first.address]) as one:
            decoy = one.submit_background("decoy", b"")
        with Client([first.address, second.address]) as both:
            handle = both.submit_background("wanted", b"", unique=unique)
            assert handle == decoy  # the same handle, on the other server
            assert both.result(handle).function == "wanted"
        with Client([first.address, second.address]) as stranger:
            assert stranger.result(handle).function == "decoy"
        with Client([first.address]) as one, Client(["127.0.0.1:1", second.address]) as two:
            assert one.result(handle).function == "decoy"
            assert two.result(handle).function == "wanted"  # the dead server is skipped


@pytest.mark.skipif(gearmand_path() is None, reason="apt-get install gearman-job-server")
def test_gearmand_cannot_answer_result() -> None:
    with GearmandServer(extra_args=["--threads", "0"]) as gearmand, \
            Client([gearmand.address], timeout=10) as client:
        handle = client.submit_background("anything", b"")
        with pytest.raises(AdminError) as info:
            client.result(handle)
        assert not isinstance(info.value, UnknownJob)


def test_no_server_reachable() -> None:
    with Client(["127.0.0.1:1"], connect_timeout=1) as client, \
            pytest.raises(GearmanError, match="no server answered"):
        client.result("H:x:1")
