"""A detector's own fault through the whole chain: simulator header registers → edge (header reads, health report)
→ Mosquitto → hub (sensor health) → alerts → the receiver. ``make demo``'s layout with two faults added to its
scenario: someone opens smoke-b1-f2's enclosure, and smoke-b2-f3's battery runs low."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from hub.demo.orchestrator import prepare
from tests.e2e.system import SCENARIO, System, notifications, running, wait_for

pytestmark = pytest.mark.e2e

SPEED = 2.0
DURATION_S = 40.0


@pytest.fixture
def system(mosquitto: int, tmp_path: Path) -> Iterator[System]:
    yaml = YAML(typ="rt")
    scenario = yaml.load(SCENARIO.read_text(encoding="utf-8"))
    scenario["faults"] = [
        {"sensor": "smoke-b1-f2", "type": "tamper", "start_s": 0},
        {"sensor": "smoke-b2-f3", "type": "low-battery", "start_s": 0, "battery_pct": 6},
    ]
    faulty = tmp_path / "faulty.yaml"
    with faulty.open("w", encoding="utf-8") as out:
        yaml.dump(scenario, out)
    plan = prepare(tmp_path / "run", mqtt_port=mosquitto)
    with running(System(plan, hub_mqtt_port=mosquitto, speed=SPEED, duration_s=DURATION_S, scenario=faulty)) as started:
        yield started


def test_a_tampered_detector_and_a_low_battery_reach_the_receiver_as_grade_iv(system: System) -> None:
    def sent(sensor: str, rule: str) -> dict[str, object] | None:
        return next(
            (n for n in notifications(system.plan) if n["sensor"] == sensor and n.get("rule") == rule),
            None,
        )

    # the first header read of each detector comes with its first poll, and a status worth a look is reported at once
    wait_for(lambda: sent("smoke-b1-f2", "tamper") is not None, system, "the tamper notification", 30)
    wait_for(lambda: sent("smoke-b2-f3", "low-battery") is not None, system, "the low-battery notification", 30)
    tamper = sent("smoke-b1-f2", "tamper")
    assert tamper is not None and tamper["grade"]["roman"] == "IV"  # type: ignore[index]
