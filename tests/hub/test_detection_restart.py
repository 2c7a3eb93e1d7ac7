"""The rules engine on the hub's ingest path, and its timers surviving a hub restart."""

import json
from pathlib import Path

import pytest

from protocol import Reading
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub

pytestmark = pytest.mark.anyio
START = T0 - 3_600_000  # an hour back: every reading is in the past (a reading from the future is flagged)


def gas(second: int, value: float = 30.0) -> Reading:
    return Reading("gas-b1-101", START + second * 1000, value, "%LEL")


async def _firing(hub: Hub, grade: str) -> float:
    return await hub.metric_line(f'anju_risk_events_total{{grade="{grade}",status="firing"}}') or 0.0


async def test_a_level_held_across_a_restart_still_counts_its_whole_duration(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    """Gas at 30 %LEL: level 1 (grade III) at once, and held 5 min it is grade II (GB/T 50493 level 1; Anju's
    grading). Three minutes before the restart and two and a half after: grade II only if the hub came back
    with the rule's timer (a fresh engine would start the 5 minutes again at the restart)."""
    data = tmp_path / "data"
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:
            await gw.publish(1, *(gas(s) for s in range(0, 181, 30)))
            assert (await gw.ack()).seq == 1
        assert await eventually(lambda: _firing(hub, "III"), 10) == 1.0
        assert await _firing(hub, "II") == 0.0
    saved = json.loads((data / "rules-state.json").read_text(encoding="utf-8"))
    assert "gas-b1-101" in saved["sensors"], saved
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:
            gw.session = 2
            await gw.publish(1, *(gas(s) for s in range(210, 331, 30)))
            assert (await gw.ack()).seq == 1
        assert await eventually(lambda: _firing(hub, "II"), 10) == 1.0
        assert await _firing(hub, "III") == 0.0, "level 1 was already open: not raised again after the restart"


async def test_unusable_rule_and_health_states_are_set_aside_and_the_hub_starts(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rules-state.json").write_text('{"version": 999}', encoding="utf-8")
    (data / "health-state.json").write_text("not json", encoding="utf-8")
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:
            await gw.publish(1, gas(0))
            assert (await gw.ack()).seq == 1
        assert await eventually(lambda: _firing(hub, "III"), 10) == 1.0
    assert (data / "rules-state.json.bad").read_text(encoding="utf-8") == '{"version": 999}'
    assert (data / "health-state.json.bad").read_text(encoding="utf-8") == "not json"
    assert json.loads((data / "health-state.json").read_text(encoding="utf-8"))["community"] == "hongxing"
