"""A gateway's own health and its command replies at the hub: real Mosquitto, the real hub app under uvicorn,
and for the end-to-end case the edge as a process reading detectors from a real Modbus server."""

import asyncio
import time
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from tests.edge.support import Detector, Detectors, EdgeProcess, write_config
from tests.hub.harness import Hub, eventually, gateway, running_hub

pytestmark = pytest.mark.anyio

GW = "anju/v1/hongxing/gw-b1"
LABELS = '{community="hongxing",gateway="gw-b1"}'


@pytest.fixture
async def hub(mosquitto: int, demo_deployment: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as running:
        yield running


def _health(silent: tuple[str, ...] = (), **values: object) -> bytes:
    return orjson.dumps({"time": time.time(), **values, "silent": list(silent)})


async def _gauge(hub: Hub, name: str) -> float | None:
    return await hub.metric_line(f"{name}{LABELS} ")


async def _reported(hub: Hub, gateway_id: str = "gw-b1") -> dict[str, Any] | None:
    body: dict[str, Any] = (await hub.api.get(f"/api/v1/gateways/hongxing/{gateway_id}/health")).json()
    return body if body["reported"] else None


async def test_bad_health_and_replies_are_dead_lettered_and_the_next_good_report_counts(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.raw(f"{GW}/health", b'{"time": 17')
        await gw.raw(f"{GW}/health", b'{"time": 1764400000, "outbox_bytes": "lots"}')
        await gw.raw("anju/v1/hongxing/gw-b9/health", _health(outbox_bytes=1))
        await gw.raw("anju/v1/other/gw-b1/health", _health(outbox_bytes=1))  # another community's hub's, not ours
        await gw.raw(f"{GW}/reply/ping", b'{"command": "time", "ok": true, "time": 1}')
        good = _health(("smoke-b1-f2", "gas-b1-301"), outbox_bytes=123_456_789, oldest_unacked_s=12.5, zigbee=1)
        await gw.raw(f"{GW}/health", good)
    # The good report is the ordering marker: published after the other community's on the same connection, so once
    # it counts, that one would have arrived before it had the hub subscribed to every community.
    assert await eventually(lambda: _gauge(hub, "anju_gateway_outbox_bytes")) == 123_456_789, "15 digits, not 6"
    for reason in ("malformed_json", "bad_health", "unknown_gateway", "bad_reply"):
        assert await hub.metric_line(f'anju_payloads_rejected_total{{reason="{reason}"}}') == 1, reason
    assert await hub.metric_line('anju_payloads_rejected_total{reason="community_mismatch"}') is None
    assert await hub.metric_line('anju_messages_received_total{channel="health"}') == 4, "never received the other's"
    letters = {(letter["topic"], letter["reason"]) for letter in (await hub.api.get("/api/v1/dead-letters")).json()}
    assert letters == {
        (f"{GW}/health", "malformed_json"),
        (f"{GW}/health", "bad_health"),
        ("anju/v1/hongxing/gw-b9/health", "unknown_gateway"),
        (f"{GW}/reply/ping", "bad_reply"),
    }
    assert await _gauge(hub, "anju_gateway_detectors_silent") == 2
    assert await _gauge(hub, "anju_gateway_oldest_unacked_seconds") == 12.5
    assert await _gauge(hub, "anju_gateway_clock_skew_seconds") is None, "not reported, so no sample"
    age_s = await _gauge(hub, "anju_gateway_health_age_seconds")
    assert age_s is not None and 0 <= age_s < 10
    assert await hub.metric_line('anju_gateway_outbox_bytes{community="hongxing",gateway="gw-b2"}') is None

    body = await _reported(hub)
    assert body is not None and body["silent_detectors"] == ["gas-b1-301", "smoke-b1-f2"]
    assert body["values"] == {"outbox_bytes": 123_456_789, "oldest_unacked_s": 12.5}, "unknown fields ignored"
    assert body["online"] is False and body["replies"] == []
    assert await _reported(hub, "gw-b2") is None, "a known gateway without a report is 200, reported false"
    for path in ("/api/v1/gateways/hongxing/gw-b9/health", "/api/v1/gateways/other/gw-b1/health"):
        missing = await hub.api.get(path)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        assert "no gateway" in missing.json()["detail"]
    anonymous = await hub.api.get("/api/v1/gateways/hongxing/gw-b1/health", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_the_latest_health_survives_a_hub_restart(mosquitto: int, demo_deployment: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:  # not retained: after the restart only the store knows it
            await gw.raw(f"{GW}/health", _health(outbox_bytes=1))
            await gw.raw(f"{GW}/health", _health(("gas-b1-101",), outbox_bytes=2))

        async def latest_seen() -> bool:
            return await _gauge(hub, "anju_gateway_detectors_silent") == 1

        await eventually(latest_seen)
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        body = await _reported(hub)
        assert body is not None and body["values"]["outbox_bytes"] == 2 and body["silent_detectors"] == ["gas-b1-101"]
        assert await _gauge(hub, "anju_gateway_detectors_silent") == 1


SERVED = {1: ("gas-b1-101", "gas"), 7: ("temp-b1-101", "temperature")}
CONFIGURED = {**SERVED, 3: ("gas-b1-301", "gas")}
"""The edge polls unit 3 too, where the Modbus server has no detector: gas-b1-301 is silent."""


async def test_an_edge_reports_its_health_answers_commands_and_names_its_silent_detector(
    hub: Hub, tmp_path: Path
) -> None:
    server = Detectors({unit: (sensor, Detector(kind)) for unit, (sensor, kind) in SERVED.items()})
    server.start()
    (tmp_path / "edge").mkdir()
    config = write_config(
        tmp_path / "edge",
        broker_port=hub.mqtt_port,
        modbus_port=server.port,
        sensors=CONFIGURED,
        extra={"health_interval_s": 0.3},
        gateway="gw-b1",
    )
    edge = EdgeProcess(config)
    edge.start()
    try:
        server.produce(1, 3.0)
        server.produce(7, 21.0)

        async def silent_reported() -> dict[str, Any] | None:
            body = await _reported(hub)
            return body if body is not None and body["silent_detectors"] == ["gas-b1-301"] else None

        body = await eventually(silent_reported, 20)
        assert body["online"] is True and body["values"]["hub_online"] == 1
        assert body["values"]["rss_bytes"] > 1 << 20 and body["values"]["unanswered_polls"] >= 1
        assert await _gauge(hub, "anju_gateway_detectors_silent") == 1
        assert await _gauge(hub, "anju_gateway_outbox_bytes") is not None
        assert await eventually(lambda: hub.metric("anju_readings_stored_total")) >= 2

        async with aiomqtt.Client("127.0.0.1", hub.mqtt_port, identifier=f"test-ops-{time.monotonic_ns()}") as ops:

            async def answered(name: str, payload: bytes, skew_over: float | None = None) -> dict[str, Any] | None:
                await ops.publish(f"{GW}/cmd/{name}", payload, qos=1)
                await asyncio.sleep(0.2)
                body = await _reported(hub) or {}
                return next(
                    (
                        r
                        for r in body.get("replies", [])
                        if r["command"] == name and (skew_over is None or r["skew_s"] > skew_over)
                    ),
                    None,
                )

            # Retried until answered: the edge's cmd/+ subscription may still be on its way (SUBACK can lag).
            pong = await eventually(lambda: answered("ping", orjson.dumps({"id": "p-42"})), 15)
            assert (pong["ok"], pong["id"], pong["detail"]) == (True, "p-42", "pong")
            # The hub's own check at the birth answered "time" already: wait for the answer to this one.
            skew = await eventually(lambda: answered("time", orjson.dumps({"hub_time": time.time() - 10.0}), 5.0))
            assert skew["ok"] is True and 9.0 < skew["skew_s"] < 11.0
            refused = await eventually(lambda: answered("reboot", b"{}"))
            assert (refused["ok"], refused["detail"]) == (False, "unknown command")

        assert await hub.metric_line('anju_command_replies_total{command="ping",ok="true"}') == 1
        assert await hub.metric_line('anju_command_replies_total{command="other",ok="false"}') == 1

        async def health_skew() -> float | None:
            body = await _reported(hub) or {"values": {}}
            value: float | None = body["values"].get("clock_skew_s")
            return value if value is not None and value > 5.0 else None

        skewed = await eventually(health_skew)
        assert 9.0 < skewed < 11.0, "the measured skew travels in the next health report"
        hubs_own = await _gauge(hub, "anju_gateway_clock_skew_seconds")
        assert hubs_own is not None and abs(hubs_own) < 2, "the gauge is the hub's own check, not a hand-published one"
        assert await asyncio.to_thread(edge.terminate) == 0
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nedge log:\n{edge.text()[-6000:]}") from None
    finally:
        edge.kill()
        await asyncio.to_thread(server.stop)  # it runs its own event loop, which may not nest in this one
    assert not [line for line in edge.text().splitlines() if "Traceback" in line]
