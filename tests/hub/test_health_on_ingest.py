"""Sensor health on the hub's ingest path: real Mosquitto, the real hub. A detector's own report in its gateway's
health and a value outside its physical range each open a grade IV alert; a report without the detector closes it;
the layer's state is saved at stop and used at the next start."""

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from protocol import Reading
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub

pytestmark = pytest.mark.anyio
GW = "anju/v1/hongxing/gw-b1"


def _health(*devices: dict[str, Any]) -> bytes:
    return orjson.dumps({"time": time.time(), "silent": [], "devices": list(devices)})


async def _alerts(hub: Hub, rule: str) -> list[dict[str, Any]]:
    return [a for a in (await hub.api.get("/api/v1/alerts")).json() if a["rule"] == rule]


async def _risks(hub: Hub, status: str) -> float:
    return await hub.metric_line(f'anju_risk_events_total{{grade="IV",status="{status}"}}') or 0.0


async def test_a_detectors_low_battery_opens_a_grade_iv_alert_and_its_recovery_clears_it(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    low = {"sensor": "smoke-b1-f3", "status": 3, "battery_pct": 7, "faults": 1, "garbage": 0}
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:
            await gw.raw(
                f"{GW}/health",
                _health(low, {"sensor": "no-such-detector", "status": 3, "battery_pct": 1, "faults": 0, "garbage": 0}),
            )
        [alert] = await eventually(lambda: _alerts(hub, "low-battery"))
        assert (alert["sensor"], alert["grade"], alert["value"], alert["unit"]) == ("smoke-b1-f3", "IV", 7.0, "%")
        assert await hub.metric_line('anju_health_unknown_devices_total{gateway="gw-b1"}') == 1
    saved = json.loads((data / "health-state.json").read_text(encoding="utf-8"))
    assert saved["device_firing"] == [["smoke-b1-f3", "low-battery"]]
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:
            await gw.raw(f"{GW}/health", _health(low))  # known already: no second event after the restart
            await gw.raw(f"{GW}/health", _health())
        assert await eventually(lambda: _risks(hub, "cleared")) == 1.0
        assert await _risks(hub, "firing") == 0.0


async def test_a_value_outside_the_physical_range_is_dead_lettered_and_opens_an_out_of_range_alert(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as hub:
        async with gateway(hub.mqtt_port) as gw:
            await gw.publish(1, Reading("gas-b1-101", T0, 0.5, "%LEL"), Reading("gas-b1-101", T0 + 1000, 180.0, "%LEL"))
            assert (await gw.ack()).seq == 1
        [alert] = await eventually(lambda: _alerts(hub, "out-of-range"))
        assert (alert["sensor"], alert["grade"], alert["value"]) == ("gas-b1-101", "IV", 180.0)
        assert "0..100" in alert["source"]
        assert await hub.metric_line('anju_payloads_rejected_total{reason="out_of_range"}') == 1
