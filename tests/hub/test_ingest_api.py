"""The hub against a real Mosquitto: store-then-ack, dedup, gaps, bad input, alerts and the API."""

import asyncio
import base64
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alerts.model import RiskEvent
from hub.config import load_deployment
from hub.detection.rules import RuleEngine, default_rules
from hub.ingest.inbox import Received
from hub.ingest.registry import Registry
from hub.ingest.service import Ingest, MqttEndpoint
from hub.metrics import Metrics
from hub.store.chunks import ChunkStore
from protocol import Batch, Reading, encode_batch
from protocol.topics import Channel
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hub(mosquitto: int, demo_deployment: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as running:
        yield running


def iso_utc(ms: int) -> str:
    """``2026-11-29T07:00:01.500Z``: the ISO 8601 form the readings API takes, in UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def gas(i: int, value: float = 2.0, sensor: str = "gas-b1-101") -> Reading:
    return Reading(sensor, T0 + i * 1000, value, "%LEL")


async def test_batch_is_stored_before_it_is_acked_and_readable(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0), gas(1, 2.5), Reading("temp-b1-101", T0, 22.5, "Cel"))
        ack = await gw.ack()
        assert (ack.session, ack.seq) == (1, 1)
    assert await hub.metric("anju_readings_stored_total") == 3
    response = await hub.api.get("/api/v1/readings", params={"sensor": "gas-b1-101", "start": T0, "end": T0 + 5000})
    body = response.json()
    assert response.status_code == 200 and body["unit"] == "%LEL"
    assert [(r["time_ms"], r["value"]) for r in body["readings"]] == [(T0, 2.0), (T0 + 1000, 2.5)]
    iso = await hub.api.get(
        "/api/v1/readings",
        params={"sensor": "gas-b1-101", "start": iso_utc(T0), "end": iso_utc(T0 + 1500)},
    )
    assert iso.json()["count"] == 2


async def test_duplicates_are_dropped_and_acks_wait_for_gaps(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0))
        assert (await gw.ack()).seq == 1
        await gw.publish(1, gas(0))
        assert (await gw.ack()).seq == 1, "a replayed batch is acknowledged again, not stored again"
        await gw.publish(3, gas(2))
        assert (await gw.ack()).seq == 1, "seq 2 is missing, so the ack must not move past it"
        await gw.publish(2, gas(1))
        assert (await gw.ack()).seq == 3
        gw.session = 2  # the gateway restarted and replays an unacked reading in a new session
        await gw.publish(1, gas(2), gas(3))
        assert (await gw.ack()).seq == 1
    assert await hub.metric("anju_readings_stored_total") == 4
    assert await hub.metric("anju_duplicates_total") == 2
    assert await hub.metric("anju_seq_gaps_total") == 1


async def test_bad_input_is_counted_dead_lettered_and_good_data_kept(hub: Hub) -> None:
    oversized = b"[" + b"1," * 140_000 + b"1]"
    async with gateway(hub.mqtt_port) as gw:
        await gw.raw("anju/v1/hongxing/gw-b1/data", b'[{"bn": "urn:anju:hongxing:gw-b1:",')
        await gw.raw("anju/v1/hongxing/gw-b1/data", oversized)
        await gw.raw("anju/v1/hongxing/gw-b9/data", b"[]")
        await gw.raw("anju/v1/hongxing/GW-B1/data", b"[]")
        await gw.raw("anju/v1/hongxing/gw-b1/state", b'{"status": "sleepy"}')
        await gw.publish(1, gas(0), Reading("temp-b1-101", T0, 22.0, "%LEL"), Reading("ghost", T0, 1.0, "%LEL"))
        assert (await gw.ack()).seq == 1
    for reason in (
        "malformed_json",
        "oversized",
        "unknown_gateway",
        "bad_id",
        "bad_state",
        "wrong_unit",
        "unknown_sensor",
    ):
        assert await hub.metric_line(f'anju_payloads_rejected_total{{reason="{reason}"}}') == 1, reason
    assert await hub.metric("anju_readings_stored_total") == 1
    letters = (await hub.api.get("/api/v1/dead-letters")).json()
    assert {letter["reason"] for letter in letters} >= {"malformed_json", "oversized", "unknown_gateway", "wrong_unit"}
    oversized_letter = next(letter for letter in letters if letter["reason"] == "oversized")
    assert base64.b64decode(oversized_letter["payload_base64"]) == oversized[:65536]
    assert (await hub.api.get("/api/v1/health")).json()["status"] == "ok"


async def test_gas_alarm_becomes_a_graded_alert_that_people_handle(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await gw.ack()
    (notification,) = await eventually(lambda: _received(hub))
    assert notification["grade"]["roman"] == "III" and notification["recipient"]["id"] == "wang-li"
    assert "27.4 %LEL" in notification["message_zh"] and "红星社区 1栋301室厨房" in notification["message_zh"]
    (alert,) = (await hub.api.get("/api/v1/alerts", params={"state": "open"})).json()
    assert (alert["grade"], alert["sensor"], alert["threshold"]) == ("III", "gas-b1-301", 25.0)
    assert alert["escalation_level"] == 0 and alert["next_deadline"] is not None  # the III answer deadline
    path = f"/api/v1/alerts/{alert['id']}"
    assert (await hub.api.post(f"{path}/acknowledge", json={"by": "wang-li"})).json()["state"] == "acknowledged"
    conflict = await hub.api.post(f"{path}/acknowledge", json={"by": "wang-li"})
    assert conflict.status_code == 409 and conflict.headers["content-type"] == "application/problem+json"
    assert (await hub.api.post(f"{path}/en-route", json={"by": "wang-li"})).json()["state"] == "en_route"
    on_site = (await hub.api.post(f"{path}/on-site", json={"by": "wang-li", "note": "到场"})).json()
    assert on_site["state"] == "on_site" and on_site["next_deadline"] is None
    early = await hub.api.post(f"{path}/close", json={"by": "li-property"})
    assert early.status_code == 409, "closing needs resolving and verifying first"
    resolved = await hub.api.post(f"{path}/resolve", json={"by": "wang-li", "note": "关阀通风，燃气公司已检修"})
    assert resolved.json()["state"] == "resolved" and resolved.json()["resolved_note"].startswith("关阀")
    assert (await hub.api.post(f"{path}/reopen", json={"by": "li-property"})).status_code == 422, "reopen needs why"
    assert (await hub.api.post(f"{path}/verify", json={"by": "li-property"})).json()["state"] == "verified"
    assert (await hub.api.post(f"{path}/close", json={"by": "li-property"})).json()["state"] == "closed"
    trail = (await hub.api.get(f"{path}/transitions")).json()
    steps = [(t["to_state"], t["by"], t["channel"]) for t in trail if t["from_state"] != t["to_state"]]
    assert steps == [
        ("open", "anju", "event"),
        ("acknowledged", "wang-li", "api"),
        ("en_route", "wang-li", "api"),
        ("on_site", "wang-li", "api"),
        ("resolved", "wang-li", "api"),
        ("verified", "li-property", "api"),
        ("closed", "li-property", "api"),
    ]
    assert (await hub.api.get("/api/v1/alerts/nope/transitions")).status_code == 404
    since = datetime.fromtimestamp(time.time() - 600, UTC).isoformat()
    [stats] = (await hub.api.get("/api/v1/response-times", params={"since": since, "by": "person"})).json()
    assert (stats["group"], stats["alerts"], stats["unacknowledged"], stats["escalated"]) == ("wang-li", 1, 0, 0)
    assert 0 <= stats["acknowledge_p50_s"] <= stats["on_site_p50_s"] <= stats["resolve_p50_s"] < 60
    naive = await hub.api.get("/api/v1/response-times", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert (await hub.api.post("/api/v1/alerts/nope/acknowledge", json={"by": "x"})).status_code == 404
    assert await hub.metric_line('anju_alerts_opened_total{grade="III"}') == 1


async def test_several_alerts_are_taken_at_once_and_each_refusal_says_why(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await gw.publish(2, gas(0, 27.4, "gas-b1-101"), channel=Channel.ALARM)
        await gw.ack()
    ids = await eventually(lambda: _open_ids(hub, 2))
    first = await hub.api.post(f"/api/v1/alerts/{ids[0]}/acknowledge", json={"by": "wang-li"})
    assert first.status_code == 200, first.text
    both = await hub.api.post("/api/v1/alerts/acknowledge", json={"by": "wang-li", "ids": [*ids, "al-nope"]})
    assert both.status_code == 200
    answer = both.json()
    assert [a["id"] for a in answer["acknowledged"]] == [ids[1]]
    assert [(r["id"], r["status"]) for r in answer["refused"]] == [(ids[0], 409), ("al-nope", 404)]
    trail = (await hub.api.get(f"/api/v1/alerts/{ids[1]}/transitions")).json()
    steps = [(t["to_state"], t["by"]) for t in trail if t["from_state"] == "open" and t["to_state"] != "open"]
    assert steps == [("acknowledged", "wang-li")]  # (open → open rows are deliveries, audited as they finish)
    twice = await hub.api.post("/api/v1/alerts/acknowledge", json={"by": "wang-li", "ids": [ids[1], ids[1]]})
    assert twice.status_code == 422 and "twice" in twice.json()["detail"]
    empty = await hub.api.post("/api/v1/alerts/acknowledge", json={"by": "wang-li", "ids": []})
    assert empty.status_code == 422 and "ids" in empty.json()["detail"]


async def _open_ids(hub: Hub, count: int) -> list[str]:
    """The open alerts' ids once there are ``count`` of them (else empty: not yet)."""
    ids = sorted(a["id"] for a in (await hub.api.get("/api/v1/alerts", params={"state": "open"})).json())
    return ids if len(ids) == count else []


async def test_a_silence_set_over_the_api_mutes_a_detector_test(hub: Hub) -> None:
    ends = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    bad = await hub.api.post("/api/v1/silences", json={"by": "li-property", "reason": "测试", "ends_at": ends})
    assert bad.status_code == 422 and "at least one" in bad.text
    naive = await hub.api.post(
        "/api/v1/silences", json={"by": "li", "reason": "x", "ends_at": "2030-01-01T00:00:00", "sensors": ["gas-1"]}
    )
    assert naive.status_code == 422 and "offset" in naive.text
    body = {"by": "li-property", "reason": "1栋301燃气探测器检测", "ends_at": ends, "sensors": ["gas-b1-301"]}
    made = await hub.api.post("/api/v1/silences", json=body)
    assert made.status_code == 201
    silence = made.json()
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await gw.ack()
    await eventually(lambda: _muted(hub, silence["id"]))
    assert hub.sink.sink.received == [], "nobody paged for a detector under test"
    lifted = await hub.api.post(f"/api/v1/silences/{silence['id']}/lift", json={"by": "li-property"})
    assert lifted.json()["lifted_by"] == "li-property"
    assert (await hub.api.post(f"/api/v1/silences/{silence['id']}/lift", json={"by": "x"})).status_code == 404
    assert (await hub.api.get("/api/v1/silences", params={"running": "true"})).json() == []


async def test_work_orders_over_the_api(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await gw.ack()
    await eventually(lambda: _received(hub))
    (alert,) = (await hub.api.get("/api/v1/alerts")).json()
    due = datetime.fromtimestamp(time.time() + 4 * 3600, UTC).isoformat()
    path = f"/api/v1/alerts/{alert['id']}/work-orders"
    unknown = await hub.api.post(path, json={"by": "wang-li", "department": "water", "task": "x", "due_at": due})
    assert unknown.status_code == 422 and "no department 'water'" in unknown.text
    body = {"by": "wang-li", "department": "gas-company", "task": "检修燃气管道", "due_at": due}
    made = await hub.api.post(path, json=body)
    assert made.status_code == 201 and made.json()["state"] == "dispatched"
    order = made.json()["id"]
    step = f"/api/v1/work-orders/{order}"
    assert (await hub.api.post(f"{step}/accept", json={"by": "zhao-gas"})).json()["state"] == "accepted"
    no_proof = await hub.api.post(f"{step}/done", json={"by": "zhao-gas"})
    assert no_proof.status_code == 409 and "after" in no_proof.text
    proof = {"by": "zhao-gas", "evidence": [{"phase": "after", "url": "https://files.example.cn/a.jpg"}]}
    done = (await hub.api.post(f"{step}/done", json=proof)).json()
    assert done["state"] == "done" and done["evidence"][0]["url"] == "https://files.example.cn/a.jpg"
    assert (await hub.api.post(f"{step}/fly", json={"by": "x"})).status_code == 422
    assert (await hub.api.post("/api/v1/work-orders/wo-nope/accept", json={"by": "x"})).status_code == 404
    assert [o["id"] for o in (await hub.api.get(path)).json()] == [order]

    async def paged() -> list[object]:
        return [b for b in hub.sink.sink.received if b["reason"] == "dispatched"]

    (page,) = await eventually(paged)
    assert page["recipient"]["id"] == "zhao-gas"  # type: ignore[index]


async def test_the_hazard_register_over_the_api(hub: Hub) -> None:
    body = {"by": "wang-li", "grid": "grid-1", "place": "1栋1层充电走廊", "title": "电动车违规充电", "grade": "II",
            "owner": "wang-li"}  # fmt: skip
    made = await hub.api.post("/api/v1/hazards", json=body)
    assert made.status_code == 201 and made.json()["review_overdue"] is False
    hazard = made.json()["id"]
    assert (await hub.api.post("/api/v1/hazards", json={**body, "grade": "V"})).status_code == 422
    assert (await hub.api.post("/api/v1/hazards", json={**body, "owner": "nobody"})).status_code == 422
    assert (await hub.api.post("/api/v1/hazards", json={**body, "alerts": ["al-nope"]})).status_code == 404
    review = {"by": "wang-li", "finding": "已安装集中充电桩", "close": True}
    closed = await hub.api.post(f"/api/v1/hazards/{hazard}/review", json=review)
    assert closed.json()["state"] == "closed" and closed.json()["last_finding"] == "已安装集中充电桩"
    assert (await hub.api.post(f"/api/v1/hazards/{hazard}/review", json=review)).status_code == 409
    assert (await hub.api.post("/api/v1/hazards/hz-nope/review", json=review)).status_code == 404
    assert (await hub.api.get("/api/v1/hazards", params={"open_only": "true"})).json() == []


async def test_disclosure_to_residents_is_public_and_without_personal_data(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await gw.ack()
    await eventually(lambda: _received(hub))
    (alert,) = (await hub.api.get("/api/v1/alerts")).json()
    item = {"by": "wang-li", "subject_kind": "alert", "subject_id": alert["id"], "title": "1栋燃气泄漏已处置",
            "text": "燃气公司已到场检修，请居民注意通风。"}  # fmt: skip
    leak = await hub.api.post("/api/v1/disclosures", json={**item, "text": "联系人王丽 13812345678"})
    assert leak.status_code == 422 and "mobile number" in leak.text
    assert (await hub.api.post("/api/v1/disclosures", json={**item, "subject_id": "al-x"})).status_code == 404
    made = await hub.api.post("/api/v1/disclosures", json=item)
    assert made.status_code == 201
    assert (made.json()["place"], made.json()["grade"]) == ("红星社区 1栋", "III"), "staff see what residents will"
    feed = await hub.api.get("/api/v1/public/disclosures", headers={"Authorization": ""})
    assert feed.status_code == 200, "residents read it without logging in"
    [public] = feed.json()["items"]
    assert (public["place"], public["grade"], public["kind"]) == ("红星社区 1栋", "III", "gas"), "building, not flat"
    shown = feed.text.replace(public["id"], "")  # the item's random id may hold any digits
    assert "wang-li" not in shown and "301" not in shown, "no person, no flat"
    assert (await hub.api.post("/api/v1/disclosures", json=item, headers={"Authorization": ""})).status_code == 401
    item_id = made.json()["id"]
    assert (await hub.api.post(f"/api/v1/disclosures/{item_id}/withdraw", json={"by": "wang-li"})).status_code == 200
    assert (await hub.api.get("/api/v1/public/disclosures")).json()["items"] == []


async def test_emergency_mode_over_the_api(hub: Hub) -> None:
    made = await hub.api.post("/api/v1/incidents", json={"by": "chen-subdistrict", "kind": "fire", "title": "1栋火灾",
                                                          "grids": ["grid-1"]})  # fmt: skip
    assert made.status_code == 201 and made.json()["active"]
    path = f"/api/v1/incidents/{made.json()['id']}"
    bad = await hub.api.post("/api/v1/incidents", json={"by": "x", "kind": "meteor", "title": "t"})
    assert bad.status_code == 422
    nowhere = await hub.api.post(
        "/api/v1/incidents", json={"by": "x", "kind": "fire", "title": "t", "buildings": ["9栋"]}
    )
    assert nowhere.status_code == 422 and "9栋" in nowhere.json()["detail"]
    body = {"by": "wang-li", "household": "1栋302", "status": "needs-help", "note": "老人行动不便"}
    assert (await hub.api.post(f"{path}/households", json=body)).json()["status"] == "needs-help"
    own = await hub.api.post(f"{path}/households/1栋302/verify", json={"by": "wang-li"})
    assert own.status_code == 422 and "someone other" in own.text
    assert (await hub.api.post(f"{path}/households/1栋302/verify", json={"by": "chen-subdistrict"})).status_code == 200
    board = (await hub.api.get(path)).json()
    assert board["counts"] == {"safe": 0, "needs-help": 1, "unreachable": 0, "households": 1, "verified": 1}
    exported = await hub.api.get(f"{path}/export.csv")
    assert exported.headers["content-type"].startswith("text/csv") and "1栋302,needs-help,需要帮助" in exported.text
    assert (await hub.api.post(f"{path}/close", json={"by": "chen-subdistrict"})).json()["active"] is False
    assert (await hub.api.post(f"{path}/households", json=body)).status_code == 409
    assert (await hub.api.get("/api/v1/incidents/inc-nope")).status_code == 404


async def test_mobilisation_over_the_api(hub: Hub) -> None:
    """Emergency mode's notices, volunteers and measures (Art. 25–26) against the demo deployment's receivers."""
    made = await hub.api.post("/api/v1/incidents", json={"by": "chen-subdistrict", "kind": "fire", "title": "1栋火灾",
                                                          "grids": ["grid-1"]})  # fmt: skip
    assert made.json()["volunteers"]["asked"] == 2, "grid-1's volunteer and the whole community's are asked at once"
    path = f"/api/v1/incidents/{made.json()['id']}"

    def sent(reason: str) -> list[str]:
        return sorted(b["recipient"]["id"] for b in hub.sink.sink.received if b["reason"] == reason)

    async def pages_of(reason: str, expected: list[str]) -> bool:
        return sent(reason) == expected

    await eventually(lambda: pages_of("volunteer_call", ["liu-yang", "sun-li"]))
    answered = await hub.api.post(f"{path}/volunteers/liu-yang/answer", json={"answer": "available", "note": "5分钟到"})
    assert answered.json()["mobilised"] is True and answered.json()["skills"] == ["first-aid"]
    unknown = await hub.api.post(f"{path}/volunteers/nobody/answer", json={"answer": "available"})
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no volunteer 'nobody'"
    assert unknown.headers["content-type"] == "application/problem+json"
    assert (await hub.api.post("/api/v1/incidents/inc-nope/volunteers/liu-yang/answer",
                               json={"answer": "available"})).status_code == 404  # fmt: skip

    too_long = await hub.api.post(f"{path}/notices", json={"by": "chen-subdistrict", "text_zh": "请" * 501})
    assert too_long.status_code == 422 and "text_zh has 501 characters; at most 500" in too_long.json()["detail"]
    text = {"text_zh": "1栋住户请从东侧楼梯撤离", "text_en": "Building 1: leave by the east stairs"}
    notice = await hub.api.post(f"{path}/notices", json={"by": "chen-subdistrict", **text})
    assert notice.status_code == 201 and notice.json()["broadcasts"] == ["b1-residents"], "not building 2's group"
    await eventually(lambda: pages_of("incident_notice", ["b1-residents"]))

    due = datetime.now(UTC).isoformat()
    unknown_department = {"by": "chen-subdistrict", "department": "nope", "text": "开启消防通道", "due": due}
    refused = await hub.api.post(f"{path}/measures", json=unknown_department)
    assert refused.status_code == 422 and "no department 'nope'" in refused.json()["detail"]
    naive = await hub.api.post(f"{path}/measures", json={**unknown_department, "department": "property",
                                                         "due": "2026-06-01T16:00:00"})  # fmt: skip
    assert naive.status_code == 422 and "due" in naive.json()["detail"]
    soon = datetime.fromtimestamp(time.time() + 1.5, UTC).isoformat()
    measure = await hub.api.post(f"{path}/measures", json={**unknown_department, "department": "property", "due": soon})
    assert measure.status_code == 201 and measure.json()["department_name"] == "物业服务中心"
    measure_path = f"{path}/measures/{measure.json()['id']}"
    await eventually(lambda: pages_of("measure_overdue", ["chen-subdistrict", "li-property"]))
    board = (await hub.api.get(path)).json()
    assert board["overdue_measures"] == [measure.json()["id"]]
    confirm = {"by": "li-property", "note": "消防通道已清空"}
    assert (await hub.api.post(f"{measure_path}/confirm", json={**confirm, "by": "wang-li"})).status_code == 422
    assert (await hub.api.post(f"{measure_path}/confirm", json=confirm)).json()["confirmed_by"] == "li-property"
    twice = await hub.api.post(f"{measure_path}/confirm", json=confirm)
    assert twice.status_code == 409 and "already confirmed by li-property" in twice.json()["detail"]
    assert (await hub.api.post(f"{path}/measures/msr-nope/confirm", json=confirm)).status_code == 404

    board = (await hub.api.get(path)).json()
    assert (board["volunteers"]["mobilised"], board["volunteers"]["skills"]) == (1, {"first-aid": 1})
    assert [d["status"] for d in board["notices"][0]["deliveries"]] == ["sent"]
    assert board["measures"][0]["note"] == "消防通道已清空" and board["overdue_measures"] == []
    page = await hub.api.get(f"{path}/summary.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "突发事件情况报告" in page.text and "1栋居民群" in page.text and "刘洋（志愿者）" in page.text
    assert "李强（物业服务中心值班）" in page.text and "li-property，" not in page.text  # people by name, not id
    assert (await hub.api.get("/api/v1/incidents/inc-nope/summary.html")).status_code == 404
    assert await hub.metric("anju_incident_messages_sent_total") == 6, "2 call-outs, 1 notice, 1 + 2 for the measure"
    assert await hub.metric("anju_incident_measures_overdue_total") == 1


async def _muted(hub: Hub, silence_id: str) -> bool:
    silences = (await hub.api.get("/api/v1/silences")).json()
    return any(s["id"] == silence_id and s["muted"] == 1 for s in silences)


async def _received(hub: Hub) -> list[dict[str, object]]:
    return list(hub.sink.sink.received)


async def test_api_refuses_without_token_and_explains_bad_requests(hub: Hub) -> None:
    anonymous = await hub.api.get("/api/v1/alerts", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["title"] == "Unauthorized"
    wrong = await hub.api.get(
        "/api/v1/readings", params={"sensor": "gas-b1-101"}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    assert (await hub.api.get("/api/v1/health", headers={"Authorization": ""})).status_code == 200
    unknown = await hub.api.get("/api/v1/readings", params={"sensor": "gas-zz"})
    assert unknown.status_code == 404 and "gas-zz" in unknown.json()["detail"]
    naive = await hub.api.get("/api/v1/readings", params={"sensor": "gas-b1-101", "start": "2025-11-29T07:00:00"})
    assert naive.status_code == 422 and "UTC offset" in naive.json()["detail"]
    backwards = await hub.api.get("/api/v1/readings", params={"sensor": "gas-b1-101", "start": 10, "end": 5})
    assert backwards.status_code == 422
    bad_limit = await hub.api.get("/api/v1/alerts", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_ack_position_survives_a_hub_restart(mosquitto: int, demo_deployment: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with (
        running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub,
        gateway(hub.mqtt_port) as gw,
    ):
        await gw.publish(1, gas(0))
        await gw.publish(2, gas(1))
        while (await gw.ack()).seq != 2:
            pass
    async with (
        running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub,
        gateway(hub.mqtt_port) as gw,
    ):
        await gw.publish(2, gas(1))
        assert (await gw.ack()).seq == 2
        assert await hub.metric("anju_duplicates_total") == 1
        assert await hub.metric("anju_readings_stored_total") == 0


async def test_a_taken_round_still_reaches_alerts_when_the_connection_drops(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    registry = Registry(load_deployment(demo_deployment))
    store = ChunkStore(path=tmp_path / "r.anju")
    paged: list[RiskEvent] = []
    release = asyncio.Event()
    paging = asyncio.Event()

    async def slow_alerts(events: Sequence[RiskEvent]) -> None:
        paging.set()
        await release.wait()
        paged.extend(events)

    ingest = Ingest(
        endpoint=MqttEndpoint(host="127.0.0.1", port=mosquitto),
        store=store,
        registry=registry,
        detector=RuleEngine(community="hongxing", ruleset=default_rules(), sensors=list(registry.sensors.values())),
        on_risks=slow_alerts,
        metrics=Metrics(),
    )
    body = encode_batch(Batch("hongxing", "gw-b1", 1, 1, (gas(0, 27.4, "gas-b1-301"),)))
    await ingest.inbox.put(Received("anju/v1/hongxing/gw-b1/alarm", body, int(time.time() * 1000)), urgent=True)
    async with aiomqtt.Client("127.0.0.1", mosquitto) as client:
        loop = asyncio.create_task(ingest._commit_forever(client))
        await asyncio.wait_for(paging.wait(), timeout=10)
        loop.cancel()  # what the TaskGroup does when the broker connection drops
        await asyncio.sleep(0.2)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await loop
    assert [event.sensor for event in paged] == ["gas-b1-301"]
    assert store.count_readings() == 1, "and the round's readings are committed"
    store.close()


async def test_an_unknown_session_past_seq_1_gets_one_rebirth_request(hub: Hub) -> None:
    async with aiomqtt.Client("127.0.0.1", hub.mqtt_port, identifier="test-rebirth-listener") as listener:
        await listener.subscribe("anju/v1/hongxing/gw-b1/cmd/+", qos=1)
        async with gateway(hub.mqtt_port) as gw:
            gw.session = 9  # the hub never saw session 9: as after losing its store
            await gw.publish(5, gas(0))
            assert (await gw.ack()).seq == 0, "seq 1-4 are unknown here: nothing can be acknowledged"
            await gw.publish(6, gas(1))
            await gw.ack()
            async with asyncio.timeout(10):
                message = await anext(aiter(listener.messages))
            assert message.topic.value == "anju/v1/hongxing/gw-b1/cmd/rebirth"
            gw.session = 10  # the gateway obeyed: a new session from seq 1
            await gw.publish(1, gas(0), gas(1), gas(2))
            assert (await gw.ack()).seq == 1
    assert await hub.metric("anju_rebirths_requested_total") == 1
    assert await hub.metric("anju_readings_stored_total") == 3


async def test_clock_skewed_readings_are_stored_flagged_counted_and_still_page(hub: Hub) -> None:
    ahead = int(time.time() * 1000) + 3_600_000  # a gateway clock one hour fast
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, Reading("gas-b1-301", ahead, 27.4, "%LEL"), channel=Channel.ALARM)
        assert (await gw.ack()).seq == 1
        await gw.publish(2, gas(0), gas(1, 3.0))
        assert (await gw.ack()).seq == 2
    assert await hub.metric_line('anju_readings_clock_skewed_total{gateway="gw-b1",reason="future"}') == 1
    assert await hub.metric("anju_readings_stored_total") == 3, "flagged, not dropped"
    (notification,) = await eventually(lambda: _received(hub))
    assert "27.4 %LEL" in notification["message_zh"], "a wrong clock must not hide a gas leak"
    body = (
        await hub.api.get("/api/v1/readings", params={"sensor": "gas-b1-301", "start": ahead, "end": ahead + 1})
    ).json()
    assert [(r["value"], r["clock_skew"]) for r in body["readings"]] == [(27.4, True)]
    latest = (await hub.api.get("/api/v1/readings/latest")).json()
    assert [(r["sensor"], r["value"]) for r in latest] == [("gas-b1-101", 3.0)], "a skewed reading is never latest"
    buckets = await hub.api.get(
        "/api/v1/readings/buckets", params={"sensor": "gas-b1-101", "width": "1h", "start": T0, "end": T0 + 3_600_000}
    )
    assert [(b["start_ms"], b["count"], b["min"], b["max"], b["mean"]) for b in buckets.json()["buckets"]] == [
        (T0, 2, 2.0, 3.0, 2.5)
    ]
    bad = await hub.api.get("/api/v1/readings/buckets", params={"sensor": "gas-b1-101", "width": "7m"})
    assert bad.status_code == 422 and "7m" in bad.json()["detail"]


async def test_a_grids_readings_in_a_window(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0), gas(1, 2.5), gas(2, 2.0, "gas-b1-301"), Reading("temp-b1-101", T0, 22.5, "Cel"))
        assert (await gw.ack()).seq == 1
    registry = Registry(load_deployment(hub.settings.deployment))
    grids = {registry.by_id[s].grid for s in ("gas-b1-101", "gas-b1-301")}
    for grid in sorted(grids):
        body = (
            await hub.api.get("/api/v1/readings/window", params={"grid": grid, "start": T0, "end": T0 + 2000})
        ).json()
        expected = sorted(
            (t, s)
            for s, t in (("gas-b1-101", T0), ("gas-b1-101", T0 + 1000), ("gas-b1-301", T0 + 2000), ("temp-b1-101", T0))
            if registry.by_id[s].grid == grid and t < T0 + 2000
        )
        assert [(r["time_ms"], r["sensor"]) for r in body["readings"]] == expected
    limited = await hub.api.get(
        "/api/v1/readings/window", params={"grid": sorted(grids)[0], "start": T0, "end": T0 + 5000, "limit": 1}
    )
    assert limited.json()["count"] == 1 and limited.json()["truncated"] is True
    missing = await hub.api.get("/api/v1/readings/window", params={"grid": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


class FailingStore:
    """The embedded store, refusing its first ``failures`` commits the way SQLite does when another process holds
    the write lock past the busy timeout; ``log`` records the order of pages and commit attempts."""

    def __init__(self, inner: ChunkStore, failures: int, log: list[str]) -> None:
        self.inner, self.failures, self.log = inner, failures, log

    def commit(self, *args: object, **kwargs: object) -> int:
        if self.failures:
            self.failures -= 1
            self.log.append("refused")
            raise sqlite3.OperationalError("database is locked")
        self.log.append("committed")
        return self.inner.commit(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_refused_commit_keeps_the_round_and_pages_before_the_store(
    demo_deployment: Path, tmp_path: Path
) -> None:
    order: list[str] = []
    inner = ChunkStore(path=tmp_path / "r.anju")
    metrics = Metrics()

    async def page(events: Sequence[RiskEvent]) -> None:
        order.extend(f"paged {event.sensor}" for event in events)

    registry = Registry(load_deployment(demo_deployment))
    ingest = Ingest(
        endpoint=MqttEndpoint(host="127.0.0.1", port=1),
        store=FailingStore(inner, 2, order),  # type: ignore[arg-type]
        registry=registry,
        detector=RuleEngine(community="hongxing", ruleset=default_rules(), sensors=list(registry.sensors.values())),
        on_risks=page,
        metrics=metrics,
    )
    body = encode_batch(Batch("hongxing", "gw-b1", 1, 1, (gas(0, 27.4, "gas-b1-301"), gas(0))))
    acks = await ingest.commit([Received("anju/v1/hongxing/gw-b1/alarm", body, int(time.time() * 1000))])
    assert order == ["paged gas-b1-301", "refused", "refused", "committed"], "a gas alarm never waits for the store"
    assert acks == {("gw-b1", 1): 1}, "acked once, after the commit that took"
    assert metrics.store_failures.get() == 2 and inner.count_readings() == 2
    inner.close()


async def test_an_alert_is_assigned_to_a_person_who_is_paged_and_comments_go_on_its_record(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await gw.ack()
    (first,) = await eventually(lambda: _received(hub))
    (alert,) = (await hub.api.get("/api/v1/alerts", params={"state": "open"})).json()
    path = f"/api/v1/alerts/{alert['id']}"
    assigned = await hub.api.post(f"{path}/assign", json={"by": "wang-li", "to": "li-property", "note": "物业离得近"})
    assert assigned.status_code == 200 and assigned.json()["state"] == "open", "the assignee takes it themselves"

    async def paged() -> list[dict[str, Any]] | None:
        found = [n for n in hub.sink.sink.received if n["recipient"]["id"] == "li-property"]
        return found or None

    (page,) = await eventually(paged)
    assert page["message_zh"].startswith("【指派给您") and page["assignment"]["by"] == "wang-li"
    assert page["assignment"]["note"] == "物业离得近" and page["alert_key"] == first["alert_key"]
    said = await hub.api.post(f"{path}/comment", json={"by": "wang-li", "text": "已电话联系住户，无人在家"})
    assert said.status_code == 200
    notes = [t["note"] for t in (await hub.api.get(f"{path}/transitions")).json()]
    assert (
        "指派给 / assigned to li-property：物业离得近" in notes and "备注 / comment：已电话联系住户，无人在家" in notes
    )
    nobody = await hub.api.post(f"{path}/assign", json={"by": "wang-li", "to": "ghost"})
    assert nobody.status_code == 422 and "ghost" in nobody.json()["detail"]
    assert (await hub.api.post(f"{path}/comment", json={"by": "wang-li", "text": ""})).status_code == 422
    assert (await hub.api.post("/api/v1/alerts/nope/comment", json={"by": "wang-li", "text": "x"})).status_code == 404
    resolved = await hub.api.post(f"{path}/acknowledge", json={"by": "li-property"})
    assert resolved.json()["acknowledged_by"] == "li-property"
    await hub.api.post(f"{path}/resolve", json={"by": "li-property", "note": "关阀"})
    late = await hub.api.post(f"{path}/assign", json={"by": "wang-li", "to": "zhang-wei"})
    assert late.status_code == 409, "a resolved alert is not assigned"


async def test_alerts_are_filtered_and_paged(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as b1, gateway(hub.mqtt_port, "gw-b2") as b2:
        await b1.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await b1.ack()
        await b2.publish(1, gas(1, 12.0, "gas-b2-101"), channel=Channel.ALARM)
        await b2.ack()

    async def both() -> list[dict[str, Any]] | None:
        found = (await hub.api.get("/api/v1/alerts")).json()
        return found if len(found) == 2 else None

    newest, oldest = await eventually(both)
    assert {newest["sensor"], oldest["sensor"]} == {"gas-b1-301", "gas-b2-101"}

    async def ids(**params: Any) -> list[str]:
        answer = await hub.api.get("/api/v1/alerts", params=params)
        assert answer.status_code == 200, answer.text
        return [a["id"] for a in answer.json()]

    b1_alert = newest if newest["sensor"] == "gas-b1-301" else oldest
    assert await ids(grade="III") == [b1_alert["id"]]
    assert set(await ids(grade=["III", "IV"])) == {newest["id"], oldest["id"]}
    assert await ids(grid="grid-2") == [a["id"] for a in (newest, oldest) if a["grid"] == "grid-2"]
    assert await ids(sensor="gas-b1-301", kind="gas") == [b1_alert["id"]]
    first = await hub.api.get("/api/v1/alerts", params={"limit": 1})
    assert [a["id"] for a in first.json()] == [newest["id"]]
    rest = await hub.api.get(first.headers["link"].removeprefix("<").split(">;")[0])
    assert [a["id"] for a in rest.json()] == [oldest["id"]] and "link" not in rest.headers
    assert await ids(since="2099-01-01T00:00:00+08:00") == []
    await hub.api.post(f"/api/v1/alerts/{b1_alert['id']}/acknowledge", json={"by": "wang-li"})
    await hub.api.post(f"/api/v1/alerts/{b1_alert['id']}/resolve", json={"by": "wang-li", "note": "关阀"})
    assert b1_alert["id"] not in await ids(active="true") and len(await ids(active="true")) == 1
    for bad in ({"grade": "V"}, {"since": "2026-01-01T00:00:00"}, {"limit": 0}):
        answer = await hub.api.get("/api/v1/alerts", params=bad)
        assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json", bad


async def test_the_audit_log_is_read_in_pages_and_its_chain_verified(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, gas(0, 27.4, "gas-b1-301"), channel=Channel.ALARM)
        await gw.ack()
    (alert,) = await eventually(lambda: _open_alerts(hub))
    await hub.api.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"by": "wang-li"})
    await hub.api.post(f"/api/v1/alerts/{alert['id']}/comment", json={"by": "wang-li", "text": "到场前先通风"})
    first = (await hub.api.get("/api/v1/audit", params={"limit": 2})).json()
    assert len(first["rows"]) == 2 and first["next_after"] == first["rows"][-1]["seq"]
    rest = (await hub.api.get("/api/v1/audit", params={"after": first["next_after"]})).json()
    rows = first["rows"] + rest["rows"]
    assert rest["next_after"] is None and [r["seq"] for r in rows] == sorted({r["seq"] for r in rows})
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]], "each row links to the one before"
    assert ("acknowledged", "wang-li") in [(r["to_state"], r["by"]) for r in rows]
    verdict = (await hub.api.get("/api/v1/audit/verify")).json()
    assert verdict["intact"] and verdict["chained"] == len(rows) and verdict["head"] == rows[-1]["hash"]
    assert (await hub.api.get("/api/v1/audit", params={"after": -1})).status_code == 422


async def _open_alerts(hub: Hub) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = (await hub.api.get("/api/v1/alerts", params={"active": "true"})).json()
    return found or None
