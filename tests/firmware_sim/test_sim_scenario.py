"""Scenario files: strict validation with key path, value and line; the demo timelines."""

from pathlib import Path

import pytest

from firmware_sim.runner import Simulation
from firmware_sim.scenario import ScenarioError, load_scenario, parse_scenario

VALID = """\
community: hongxing
seed: 1
duration_s: 10
gateways:
  gw-1:
    - {sensor: gas-1, kind: gas, unit_id: 1}
    - sensor: smoke-1
      kind: smoke
      unit_id: 2
incidents:
  - name: leak
    sensors: [gas-1]
    start_s: 1
    ramp: {to: 30.0, over_s: 2}
    grade: 3
"""


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.yaml")
    return info.value


def test_valid_scenario_parses() -> None:
    scenario = parse_scenario(VALID)
    assert [d.sensor_id for _, d in scenario.devices()] == ["gas-1", "smoke-1"]
    assert scenario.sample_interval_s == 1.0
    (incident,) = scenario.incidents
    assert incident.end_s == 3.0
    assert incident.weight(0.5) == 0.0
    assert incident.weight(2.0) == 0.5
    assert incident.weight(3.0) == 1.0
    assert incident.weight(3.5) == 0.0


@pytest.mark.parametrize(
    ("old", "new", "path", "value", "line"),
    [
        ("seed: 1\n", "seed: 1\nsed: 2\n", "sed", "sed", 3),
        ("      unit_id: 2\n", "      unit_id: 2\n      colour: red\n", "gateways.gw-1[1].colour", "colour", 10),
        ("community: hongxing", "community: Hong_Xing", "community", "Hong_Xing", 1),
        ("sensor: smoke-1", "sensor: Smoke/1", "gateways.gw-1[1].sensor", "Smoke/1", 7),
        ("gw-1:", "gw_1:", "gateways.gw_1", "gw_1", 5),
        ("kind: smoke", "kind: radon", "gateways.gw-1[1].kind", "radon", 8),
        ("unit_id: 2", "unit_id: 1", "gateways.gw-1[1].unit_id", 1, 9),
        ("unit_id: 2", "unit_id: 248", "gateways.gw-1[1].unit_id", 248, 9),
        ("sensors: [gas-1]", "sensors: [gas-9]", "incidents[0].sensors[0]", "gas-9", 12),
        ("grade: 3", "grade: 5", "incidents[0].grade", 5, 15),
        ("to: 30.0", "to: 130.0", "incidents[0].ramp.to", 130.0, 14),
        ("duration_s: 10", "duration_s: ten", "duration_s", "ten", 3),
    ],
)
def test_error_names_key_value_and_line(old: str, new: str, path: str, value: object, line: int) -> None:
    assert old in VALID
    error = _error(VALID.replace(old, new, 1))
    assert (error.path, error.value, error.line) == (path, value, line)
    assert f"bad.yaml:{line}: {path}:" in str(error)
    assert repr(value) in str(error)


def test_missing_key_is_named() -> None:
    error = _error(VALID.replace("seed: 1\n", ""))
    assert error.path == "seed"
    assert "missing" in error.reason


def test_yaml_syntax_error_has_line() -> None:
    error = _error("community: hongxing\nseed: [1\nduration_s: 3\n")
    assert error.line is not None
    assert "YAML" in error.reason


def test_unreadable_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "absent.yaml")


# 08:00 on 1970-01-01 local; then breakfast, lunch and dinner on 2025-12-01 (UTC+8): the cooking bumps differ
@pytest.mark.parametrize("start_ms", [0, 1_764_543_600_000, 1_764_561_600_000, 1_764_585_000_000])
def test_gas_leak_crosses_level_1_between_15_and_25_s(scenarios: Path, start_ms: int) -> None:
    scenario = load_scenario(scenarios / "kitchen_gas_leak.yaml")
    assert scenario.community == "hongxing"
    assert [len(g.devices) for g in scenario.gateways] == [10, 10]
    sim = Simulation(scenario, start_ms=start_ms)
    crossed_at = None
    alarm_at = None
    peak = 0.0
    records = []
    for _ in range(sim.sample_count):
        tick = sim.tick()
        records.extend(sim.truth_records(tick))
        for s in tick.samples:
            if s.device.sensor_id != "gas-b1-301":
                assert not s.sample.alarm_entered, s.device.sensor_id
                continue
            peak = max(peak, s.sample.value)
            if crossed_at is None and s.sample.value >= 25.0:
                crossed_at = tick.t_s
            if s.sample.alarm_entered:
                alarm_at = tick.t_s
    assert crossed_at is not None and 15.0 <= crossed_at <= 25.0
    assert alarm_at == crossed_at
    assert 50.0 <= peak <= 60.0  # level-2 set point passed, as the ground-truth grade 2 says
    incidents = [r for r in records if r["type"] == "incident"]
    assert incidents == [
        {
            "type": "incident",
            "name": "kitchen-gas-leak-b1-301",
            "sensors": ["gas-b1-301"],
            "start_ms": start_ms + 5000,
            "end_ms": start_ms + 120000,
            "grade": 2,
        }
    ]
    last = [r for r in records if r["type"] == "reading" and r["sensor"] == "gas-b1-301"][-1]
    assert last["value"] < 2.0  # ventilated back to baseline


def test_quiet_scenario_raises_no_alarm(scenarios: Path) -> None:
    sim = Simulation(load_scenario(scenarios / "quiet.yaml"), start_ms=0)
    assert sim.sample_count == 60
    for _ in range(sim.sample_count):
        tick = sim.tick()
        assert not tick.started
        assert not any(s.sample.alarm_entered for s in tick.samples)
