"""The live stream (issue 7): ``GET /api/v1/stream`` against a real hub — Mosquitto, HTTP, the alert sink."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from hub.ingest.latest import LatestValues
from hub.live import Interest, SensorChanges, Subscription
from hub.store.base import ReadingFlag
from protocol import Reading
from protocol.topics import Channel
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hub(mosquitto: int, demo_deployment: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as running:
        yield running


@dataclass(frozen=True)
class Event:
    name: str
    id: str | None
    data: dict[str, Any]


class Listener:
    """An EventSource's view of the stream: events parsed as they arrive, kept in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.comments = 0

    async def read(self, response: httpx.Response) -> None:
        name, event_id, data = "message", None, []
        async for line in response.aiter_lines():
            if line == "":
                if data:
                    self.events.append(Event(name, event_id, json.loads("\n".join(data))))
                name, event_id, data = "message", None, []
            elif line.startswith(":"):
                self.comments += 1
            else:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    name = value
                elif field == "id":
                    event_id = value
                elif field == "data":
                    data.append(value)

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@contextlib.asynccontextmanager
async def listening(hub: Hub, **params: Any) -> AsyncIterator[Listener]:
    headers = params.pop("headers", {})
    listener = Listener()
    async with hub.api.stream("GET", "/api/v1/stream", params=params, headers=headers, timeout=None) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = asyncio.create_task(listener.read(response))
        try:
            await eventually(lambda: _ready(listener))
            yield listener
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await reader


async def _ready(listener: Listener) -> bool:
    return bool(listener.named("hello"))


def gas(i: int, value: float, sensor: str = "gas-b1-301") -> Reading:
    return Reading(sensor, T0 + i * 1000, value, "%LEL")


async def test_alert_changes_and_sensor_values_arrive_live_and_a_reconnect_resumes(hub: Hub) -> None:
    async with listening(hub) as everything, listening(hub, grid="grid-2") as other_grid:
        async with gateway(hub.mqtt_port) as gw:
            await gw.publish(1, gas(0, 27.4), Reading("temp-b1-101", T0, 22.5, "Cel"), channel=Channel.ALARM)
            await gw.ack()

        async def opened() -> list[Event] | None:
            alerts = everything.named("alert")
            return alerts or None

        [first, *_] = await eventually(opened)
        assert first.data["alert"]["sensor"] == "gas-b1-301" and first.data["alert"]["grade"] == "III"
        assert first.data["transition"]["to_state"] == "open" and first.id == str(first.data["seq"])

        async def sensor_values() -> dict[str, dict[str, Any]] | None:
            seen = {s["sensor"]: s for e in everything.named("sensors") for s in e.data["sensors"]}
            return seen if {"gas-b1-301", "temp-b1-101"} <= seen.keys() else None

        values = await eventually(sensor_values)
        assert (values["gas-b1-301"]["value"], values["gas-b1-301"]["unit"]) == (27.4, "%LEL")
        assert values["temp-b1-101"]["grid"] == "grid-1" and values["temp-b1-101"]["status"] == "fresh"

        alert_id = first.data["alert"]["id"]
        acked = await hub.api.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"by": "wang-li"})
        assert acked.status_code == 200

        async def acknowledged() -> Event | None:
            return next((e for e in everything.named("alert") if e.data["alert"]["state"] == "acknowledged"), None)

        ack_event = await eventually(acknowledged)
        assert ack_event.data["transition"]["by"] == "wang-li"
        seqs = [int(e.data["seq"]) for e in everything.named("alert")]
        assert seqs == sorted(set(seqs)), "each change once, in order"
        assert other_grid.named("alert") == [] and other_grid.named("sensors") == [], "grid-2 sees nothing of grid-1"

    # EventSource reconnects with the last id it saw: what came after it is sent first, from the audit trail.
    async with listening(hub, headers={"Last-Event-ID": first.id}) as resumed:
        replayed = [e.data["alert"]["state"] for e in resumed.named("alert")]
        assert "acknowledged" in replayed and all(int(e.data["seq"]) > int(first.data["seq"]) for e in resumed.events
                                                  if e.name == "alert")  # fmt: skip
    assert await hub.metric("anju_live_subscribers") == 0


async def test_bad_stream_requests_get_problem_details(hub: Hub) -> None:
    bad_id = await hub.api.get("/api/v1/stream", headers={"Last-Event-ID": "abc"})
    assert bad_id.status_code == 400 and bad_id.headers["content-type"] == "application/problem+json"
    assert "Last-Event-ID" in bad_id.json()["detail"]
    grid = await hub.api.get("/api/v1/stream", params={"grid": "grid-9"})
    assert grid.status_code == 404 and "grid-9" in grid.json()["detail"]
    gw = await hub.api.get("/api/v1/stream", params={"gateway": "gw-x"})
    assert gw.status_code == 404 and "gw-x" in gw.json()["detail"]
    nothing = await hub.api.get("/api/v1/stream", params={"alerts": "false", "sensors": "false"})
    assert nothing.status_code == 422
    anonymous = await hub.api.get("/api/v1/stream", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_a_subscriber_that_falls_behind_is_dropped_not_buffered() -> None:
    subscription = Subscription(Interest(), capacity=3)
    batch = SensorChanges(0, [])
    assert all(subscription.offer(batch) for _ in range(3))
    assert not subscription.offer(batch) and subscription.dropped
    assert await subscription.next(1.0) is None, "the queue is emptied and the stream told to reset"
    assert not subscription.offer(batch), "once dropped, nothing more is queued"


def test_latest_values_keep_the_newest_reading_per_sensor_and_skip_skewed_ones() -> None:
    latest = LatestValues(4)
    rows = np.array([2, 0, 2, 2], np.intp)
    times = np.array([200, 50, 300, 100], np.int64)
    values = np.array([2.0, 0.5, 3.0, 1.0])
    latest.observe(rows, times, values, np.zeros(4, np.uint8))
    assert latest.changed_since(0).tolist() == [0, 2] and latest.value[2] == 3.0 and latest.time_ms[2] == 300
    version = latest.round
    skewed = np.array([ReadingFlag.CLOCK_SKEW, 0], np.uint8)
    latest.observe(np.array([2, 1], np.intp), np.array([10**13, 80], np.int64), np.array([9.0, 7.0]), skewed)
    assert latest.changed_since(version).tolist() == [1] and latest.value[2] == 3.0
    latest.observe(np.array([2], np.intp), np.array([250], np.int64), np.array([8.0]), np.zeros(1, np.uint8))
    assert latest.round == version + 1, "an older reading moves nothing"
    mask = np.array([True, False, True, True])
    assert latest.changed_since(0, mask).tolist() == [0, 2]
