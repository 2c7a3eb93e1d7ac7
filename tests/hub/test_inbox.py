"""The hub's inbox: urgent rounds alone, routine messages round-robin per gateway, each lane bounded on its own."""

import asyncio

import pytest

from hub.ingest.inbox import Inbox, Received

pytestmark = pytest.mark.anyio


def message(gateway: str, n: int, *, channel: str = "data", size: int = 10) -> Received:
    return Received(f"anju/v1/hongxing/{gateway}/{channel}", bytes([n % 256]) * size, n)


async def test_routine_messages_come_one_gateway_at_a_time_each_in_its_own_order() -> None:
    inbox = Inbox(capacity=100)
    for n in range(6):
        await inbox.put(message("gw-a", n), urgent=False)  # a backlog, queued first
    await inbox.put(message("gw-b", 100), urgent=False)
    await inbox.put(message("gw-c", 200), urgent=False)
    await inbox.put(message("gw-b", 101), urgent=False)
    first = await inbox.take(limit=4)
    assert [(m.topic.split("/")[3], m.received_ms) for m in first] == [
        ("gw-a", 0),
        ("gw-b", 100),
        ("gw-c", 200),
        ("gw-a", 1),
    ]
    rest = await inbox.take(limit=100)
    assert [m.received_ms for m in rest] == [101, 2, 3, 4, 5]
    assert len(inbox) == 0 and inbox.bytes == 0 and inbox.gateways == 0


async def test_an_urgent_round_holds_only_urgent_messages() -> None:
    inbox = Inbox(capacity=100)
    for n in range(5):
        await inbox.put(message("gw-a", n), urgent=False)
    await inbox.put(message("gw-b", 50, channel="alarm"), urgent=True)
    assert [m.received_ms for m in await inbox.take(limit=100)] == [50]
    assert [m.received_ms for m in await inbox.take(limit=100)] == [0, 1, 2, 3, 4]


async def test_a_full_routine_lane_holds_back_routine_puts_but_never_urgent_ones() -> None:
    inbox = Inbox(capacity=2, capacity_bytes=1_000)
    assert await inbox.put(message("gw-a", 0), urgent=False) == 0.0
    await inbox.put(message("gw-a", 1), urgent=False)
    blocked = asyncio.create_task(inbox.put(message("gw-a", 2), urgent=False))
    await asyncio.sleep(0.05)
    assert not blocked.done() and inbox.waiting(urgent=False) == 1
    async with asyncio.timeout(1):
        await inbox.put(message("gw-b", 9, channel="alarm"), urgent=True)
    assert [m.received_ms for m in await inbox.take(limit=10)] == [9]
    assert not blocked.done(), "taking urgent messages frees no routine room"
    assert [m.received_ms for m in await inbox.take(limit=1)] == [0]
    async with asyncio.timeout(1):
        waited_s = await blocked
    assert waited_s >= 0.05 and inbox.waiting(urgent=False) == 0


async def test_lanes_and_rounds_are_bounded_in_bytes_but_one_message_always_fits() -> None:
    inbox = Inbox(capacity=100, capacity_bytes=250)
    await inbox.put(message("gw-a", 0, size=100), urgent=False)
    await inbox.put(message("gw-a", 1, size=100), urgent=False)
    assert not inbox.has_room(message("gw-a", 2, size=100), urgent=False)
    assert inbox.has_room(message("gw-a", 2, size=50), urgent=False)
    assert [m.received_ms for m in await inbox.take(limit=10, limit_bytes=150)] == [0]
    assert [m.received_ms for m in await inbox.take(limit=10, limit_bytes=10)] == [1], "one message always goes"
    huge = message("gw-a", 3, size=10_000)
    assert inbox.has_room(huge, urgent=False), "an empty lane takes a message larger than its byte bound"


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Inbox(capacity=0)
    with pytest.raises(ValueError, match="capacity_bytes"):
        Inbox(capacity=1, capacity_bytes=0)
