"""Risk events from other systems over ``POST /api/v1/events``: the same pipeline as detection, each bad event named
and counted, the good ones of a batch taken all the same. A real hub (Mosquitto, HTTP, SQLite) and a real sink."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.api.routes.events import MAX_EVENTS
from tests.hub.harness import Hub, eventually, running_hub

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hub(mosquitto: int, demo_deployment: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as running:
        yield running


def blocked_lane(**changes: Any) -> dict[str, Any]:
    """A video-analytics event: a fire lane blocked by parked cars (消防通道占用)."""
    event = {
        "system": "video-ai",
        "id": "cam-b1-east/fire-lane",
        "grade": "III",
        "grid": "grid-1",
        "kind": "fire-lane-blocked",
        "kind_zh": "消防通道占用",
        "kind_en": "fire lane blocked",
        "location_zh": "红星社区 1栋东侧消防通道",
        "rule": "fire lane blocked over 10 min",
        "rule_zh": "消防通道占用超过10分钟",
        "time": datetime.now(UTC).isoformat(),
        "source": "GB 50016-2014 §7.1.8 fire lanes kept clear",
    }
    return {**event, **changes}


async def pages(hub: Hub, key_suffix: str) -> list[dict[str, Any]]:
    return [b for b in hub.sink.sink.received if str(b.get("alert_key", "")).endswith(key_suffix)]


async def test_an_outside_event_opens_an_alert_pages_the_grid_and_clears(hub: Hub) -> None:
    answer = await hub.api.post("/api/v1/events", json={"events": [blocked_lane()]})
    assert answer.status_code == 202, answer.text
    (taken,) = answer.json()["taken"]
    assert taken["key"] == "hongxing/ext/video-ai/cam-b1-east/fire-lane"
    assert (taken["state"], taken["grade"]) == ("open", "III")
    (page,) = await eventually(lambda: pages(hub, "/fire-lane"))
    assert page["recipient"]["id"] == "wang-li" and page["grade"]["roman"] == "III"
    assert page["message_zh"].startswith("【III级 黄色 较大】红星社区 1栋东侧消防通道 消防通道占用 ")
    assert "消防通道占用超过10分钟" in page["message_zh"] and "fire lane blocked" in page["message_en"]
    assert (page["kind_zh"], page["kind_en"]) == ("消防通道占用", "fire lane blocked")
    alert = (await hub.api.get(f"/api/v1/alerts/{taken['alert_id']}")).json()
    assert (alert["kind"], alert["sensor"]) == ("fire-lane-blocked", "cam-b1-east/fire-lane")

    again = await hub.api.post("/api/v1/events", json={"events": [blocked_lane(grade="II")]})
    assert again.json()["taken"][0]["alert_id"] == taken["alert_id"], "one alert per condition, upgraded"
    assert again.json()["taken"][0]["grade"] == "II"
    upgraded = await eventually(lambda: _pages_for(hub, "/fire-lane", 2))
    assert [p["reason"] for p in upgraded] == ["opened", "upgraded"] and upgraded[1]["grade"]["roman"] == "II"
    cleared = await hub.api.post("/api/v1/events", json={"events": [blocked_lane(status="cleared")]})
    assert cleared.status_code == 202
    alert = (await hub.api.get(f"/api/v1/alerts/{taken['alert_id']}")).json()
    assert alert["cleared_at"] is not None and alert["state"] == "open", "cleared, still for a person to resolve"
    assert await hub.metric_line('anju_api_risk_events_total{outcome="taken"}') == 3


async def test_each_bad_event_is_named_and_counted_and_the_good_ones_are_taken(hub: Hub) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    batch = [
        blocked_lane(id="ok-1"),
        blocked_lane(id="bad-grid", grid="grid-9"),
        blocked_lane(id="bad-grade", grade="V"),
        blocked_lane(id="bad-time", time=future),
        blocked_lane(id="unconfirmed-i", grade="I"),
        blocked_lane(id="bad-person", grade="I", confirmed_by="nobody"),
        blocked_lane(id="other-community", community="qingshui"),
        blocked_lane(id="bad-place", place="b9"),
        blocked_lane(id="nan", value=float("nan")),
        blocked_lane(id="extra", colour="red"),
        blocked_lane(id="naive", time="2026-11-30T08:00:00"),
        {**blocked_lane(id="no-kind"), "kind": None},
        blocked_lane(id="ok-2", grade="I", confirmed_by="wang-li"),
    ]
    answer = await hub.api.post(
        "/api/v1/events", content=_json_with_nan(batch), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert [t["index"] for t in body["taken"]] == [0, 12]
    assert body["taken"][1]["grade"] == "I", "a person's confirmation allows grade I"
    refused = {r["index"]: " ".join(r["errors"]) for r in body["refused"]}
    assert sorted(refused) == list(range(1, 12))
    assert "no grid 'grid-9'" in refused[1]
    assert refused[2].startswith("grade:")
    assert "ahead" in refused[3]
    assert "I needs confirmed_by" in refused[4]
    assert "no person 'nobody'" in refused[5]
    assert "'qingshui' is not this hub's" in refused[6]
    assert "building 'b9'" in refused[7]
    assert refused[8].startswith("value:")
    assert refused[9].startswith("colour:")
    assert "offset" in refused[10]
    assert refused[11].startswith("kind:")
    assert "11 of 13 events refused" in body["detail"] and "events[1]" in body["detail"]
    assert await hub.metric_line('anju_api_risk_events_total{outcome="rejected",reason="grid"}') == 1
    assert await hub.metric("anju_api_risk_events_total") == 13
    open_keys = {a["key"] for a in (await hub.api.get("/api/v1/alerts", params={"state": "open"})).json()}
    assert open_keys == {"hongxing/ext/video-ai/ok-1", "hongxing/ext/video-ai/ok-2"}, "nothing of the bad ones"


async def test_the_batch_shape_size_and_token_are_checked(hub: Hub) -> None:
    anonymous = await hub.api.post("/api/v1/events", json={"events": [blocked_lane()]}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert (await hub.api.post("/api/v1/events", json={"events": []})).status_code == 422
    assert (await hub.api.post("/api/v1/events", json=blocked_lane())).status_code == 422, "events come in a batch"
    too_many = await hub.api.post("/api/v1/events", json={"events": [blocked_lane()] * 501})
    assert too_many.status_code == 422 and "500" in too_many.json()["detail"]
    broken = await hub.api.post("/api/v1/events", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422
    assert (await hub.api.get("/api/v1/alerts", params={"state": "open"})).json() == []


async def _pages_for(hub: Hub, key_suffix: str, count: int) -> list[dict[str, Any]] | None:
    found = await pages(hub, key_suffix)
    return found if len(found) >= count else None


def _json_with_nan(batch: list[dict[str, Any]]) -> bytes:
    """The batch as JSON, ``NaN`` included (what a careless producer sends; httpx's ``json=`` refuses it)."""
    return json.dumps({"events": batch}).encode()


async def test_a_body_over_the_limit_is_refused_before_it_is_read_and_counted(hub: Hub) -> None:
    limit = hub.settings.api_max_body_bytes
    padding = "x" * (2 * limit // MAX_EVENTS)  # refused before any field is checked
    big = {"events": [blocked_lane(id=f"e{i}", source=padding) for i in range(MAX_EVENTS)]}
    declared = await hub.api.post("/api/v1/events", json=big)
    assert declared.status_code == 413 and declared.headers["content-type"] == "application/problem+json"
    assert f"at most {limit:,} bytes" in declared.json()["detail"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the bound is found while reading
        for _ in range(limit // 65_536 + 2):
            yield b" " * 65_536

    streamed = await hub.api.post("/api/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "passed" in streamed.json()["detail"]
    assert await hub.metric_line('anju_api_requests_refused_total{reason="body_too_large"}') == 2
    assert (await hub.api.get("/api/v1/alerts", params={"state": "open"})).json() == []
    assert (await hub.api.post("/api/v1/events", json={"events": [blocked_lane()]})).status_code == 202
