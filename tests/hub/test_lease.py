"""Community leases (hub/lease.py) against a real PostgreSQL: who holds, when a standby may take over, and fencing."""

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from alerts.model import Alert, AlertState, Grade
from alerts.sqldb import FencedOut
from alerts.store import AlertStore
from hub.demo.postgres import Postgres
from hub.demo.processes import free_port
from hub.lease import Lease, LeaseConfigError, LeaseLost, leases
from tests.alerts.support import event

pytestmark = pytest.mark.anyio


@pytest.fixture
def url(database_url: str) -> str:
    """A database of this test's own (the lease table is per database)."""
    return database_url


class Clock:
    """A monotonic clock a test can move forward, as if this process had been frozen meanwhile."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return asyncio.get_running_loop().time() + self.offset


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[Lease, Lease]]:
    a = Lease(url, "hongxing", holder="hub-a", term_s=3, poll_s=0.1)
    b = Lease(url, "hongxing", holder="hub-b", term_s=3, poll_s=0.1)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_one_holder_at_a_time_and_a_release_hands_over_at_once(pair: tuple[Lease, Lease], url: str) -> None:
    a, b = pair
    assert await a.try_acquire() and a.epoch == 1
    assert not await b.try_acquire(), "a held lease is not taken"
    assert await a.renew()
    [state] = leases(url)
    assert (state.community, state.holder, state.epoch) == ("hongxing", "hub-a", 1)
    assert state.expires_at > state.renewed_at
    await a.release()
    assert await b.try_acquire() and b.epoch == 2, "a released lease is free at once, with the next epoch"
    assert not await a.renew(), "the old holder's epoch is gone"


async def test_a_standby_takes_a_lease_only_once_its_term_ran_out(pair: tuple[Lease, Lease]) -> None:
    a, b = pair
    assert await a.try_acquire()
    started = asyncio.get_running_loop().time()
    await b.acquire(timeout_s=10)
    waited = asyncio.get_running_loop().time() - started
    assert 2.5 <= waited <= 5, f"taken after {waited:.2f} s of a 3 s term"
    assert b.epoch == 2
    assert not await a.renew(), "a holder whose term ran out cannot renew, even before it notices"
    with pytest.raises(TimeoutError, match="held by hub-b"):
        await a.acquire(timeout_s=0.3)


async def test_keep_stops_the_holder_when_it_was_taken_over(pair: tuple[Lease, Lease]) -> None:
    a, b = pair
    assert await a.try_acquire()
    await a.release()  # as if the term ran out while a was cut off
    a.epoch = 1
    assert await b.try_acquire()
    reasons: list[str] = []
    with pytest.raises(LeaseLost, match="taken over"):
        await asyncio.wait_for(a.keep(on_lost=reasons.append), timeout=5)
    assert reasons and "epoch 1" in reasons[0] and a.epoch is None


async def test_keep_stops_a_frozen_holder_without_renewing(url: str) -> None:
    clock = Clock()
    a = Lease(url, "hongxing", holder="hub-a", term_s=3, poll_s=0.1, clock=clock)
    try:
        assert await a.try_acquire()
        clock.offset = a.term_s  # woke up after a whole term: the server may have handed the lease on already
        reasons: list[str] = []
        with pytest.raises(LeaseLost, match="did not run"):
            await asyncio.wait_for(a.keep(on_lost=reasons.append), timeout=5)
        assert len(reasons) == 1
    finally:
        await a.close()


async def test_keep_stops_the_holder_before_the_server_lets_a_standby_in(url: str, postgres_server: Postgres) -> None:
    a = Lease(url, "hongxing", holder="hub-a", term_s=3, poll_s=0.1)
    try:
        assert await a.try_acquire()
        deadline = a.deadline()
        a.url = f"postgresql://anju@127.0.0.1:{free_port()}/postgres"  # the server is gone for this hub
        await a._live()  # the open connection still works: close it as a cut would
        assert a._connection is not None
        await a._connection.close()
        reasons: list[str] = []
        with pytest.raises(LeaseLost, match="not renewed before its term"):
            await asyncio.wait_for(a.keep(on_lost=reasons.append), timeout=10)
        stopped = asyncio.get_running_loop().time()
        assert deadline <= stopped < deadline + 1.5, "stops at its deadline, no later"
        [state] = leases(url)
        expires = state.expires_at.timestamp()
        with psycopg.connect(url) as db:
            row = db.execute("SELECT extract(epoch FROM now())").fetchone()
            assert row is not None
            server_now = float(row[0])
        assert server_now < expires, "the holder stopped while the server still counted the lease as its own"
    finally:
        await a.close()


def _alert() -> Alert:
    first = event()
    return Alert(id="alert-1", key=first.key, community=first.community, grid=first.grid, grade=Grade.III,
                 state=AlertState.OPEN, revision=1, first_event=first, last_event=first, opened_at_ms=first.time_ms,
                 updated_at_ms=first.time_ms)  # fmt: skip


async def test_a_store_write_is_refused_once_the_lease_was_taken_over(
    pair: tuple[Lease, Lease], url: str, tmp_path: Path
) -> None:
    a, b = pair
    assert await a.try_acquire()
    held = a
    store = AlertStore(url, schema="anju_hongxing", fence=lambda: held.fence)
    try:
        store.commit(_alert())
        assert store.get("alert-1") is not None
        await a.release()
        a.epoch = 1  # a has not noticed: it still thinks it holds epoch 1
        assert await b.try_acquire()
        with pytest.raises(FencedOut, match="no longer holds the lease"):
            store.commit(_alert())
        a.epoch = None
        with pytest.raises(LeaseLost):
            store.commit(_alert())
    finally:
        store.close()


async def test_a_write_after_the_term_ran_out_is_refused_even_before_a_takeover(
    pair: tuple[Lease, Lease], url: str
) -> None:
    a, b = pair
    assert await a.try_acquire()
    held = a
    store = AlertStore(url, schema="anju_hongxing", fence=lambda: held.fence)
    try:
        await asyncio.sleep(a.term_s + 0.2)  # a's term ran out on the server: b may take it ...
        with pytest.raises(FencedOut):
            store.commit(_alert())  # ... and a's write is refused, even before anyone took it
        assert await b.try_acquire()
    finally:
        store.close()


async def test_a_takeover_waits_for_the_holders_write_in_flight(pair: tuple[Lease, Lease], url: str) -> None:
    a, b = pair
    assert await a.try_acquire()
    held = a
    store = AlertStore(url, schema="anju_hongxing", fence=lambda: held.fence)
    inside, leave = threading.Event(), threading.Event()

    def slow_write() -> None:
        with store._transaction() as db:  # past the fence: the write is in flight
            db.execute("SELECT 1")
            inside.set()
            leave.wait(10)

    writer = threading.Thread(target=slow_write)
    writer.start()
    try:
        assert await asyncio.to_thread(inside.wait, 10)
        await a.release()  # as if its term ran out now
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, leave.set)
        started = loop.time()
        assert await b.try_acquire(), "taken once the write in flight committed"
        assert loop.time() - started >= 0.9, "the takeover waited for the write in flight"
    finally:
        leave.set()
        await asyncio.to_thread(writer.join, 10)
        store.close()


async def test_the_holder_renews_while_its_writes_follow_each_other_back_to_back(url: str) -> None:
    a = Lease(url, "hongxing", holder="hub-a", term_s=3, poll_s=0.1)
    assert await a.try_acquire()
    held = a
    store = AlertStore(url, schema="anju_hongxing", fence=lambda: held.fence)
    stop = threading.Event()
    written: list[int] = []

    def writes() -> None:
        base = _alert()
        while not stop.is_set():
            alert = dataclasses.replace(base, id=f"alert-{len(written)}", key=f"k-{len(written)}")
            store.commit(alert)
            written.append(1)

    writer = threading.Thread(target=writes)
    writer.start()
    keeper = asyncio.create_task(a.keep(on_lost=lambda reason: None))
    try:
        await asyncio.sleep(2 * a.term_s)
        assert not keeper.done(), "the lease was lost under a steady stream of writes"
        assert a.renewal_age_s() < a.renew_every_s + 1
        assert len(written) > 100
    finally:
        stop.set()
        await asyncio.to_thread(writer.join, 10)
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        store.close()
        await a.close()


def test_a_short_term_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 s"):
        Lease("postgresql://anju@127.0.0.1:1/x", "hongxing", term_s=1)


async def test_a_wrong_database_stops_a_standby_at_once_and_an_unreachable_server_is_waited_for(
    postgres_server: Postgres,
) -> None:
    wrong = Lease(postgres_server.database_url("no_such_database"), "hongxing", term_s=3, poll_s=0.1)
    with pytest.raises(LeaseConfigError, match='database "no_such_database" does not exist'):
        await wrong.acquire(timeout_s=5)
    away = Lease(f"postgresql://anju@127.0.0.1:{free_port()}/postgres", "hongxing", term_s=3, poll_s=0.1)
    with pytest.raises(TimeoutError, match="not acquired within"):
        await away.acquire(timeout_s=0.5)
