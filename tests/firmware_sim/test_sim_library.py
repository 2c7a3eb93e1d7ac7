"""The shipped scenarios do what their ground truth says: each incident drives its detectors past the set
points that justify its grade, in the documented order, and the quiet month holds no incident."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_sim.runner import Simulation, write_truth
from firmware_sim.scenario import ScenarioError, load_scenario, scenario_from_deployment
from protocol.kinds import KINDS

START_MS = 1_764_345_600_000  # 2025-11-29 00:00 in Chengdu


@pytest.fixture(params=[0.0, 2.5, 7.0, 18.5], ids=lambda hour: f"{hour:g}h")
def start_ms(request: pytest.FixtureRequest) -> int:
    """Runs starting at several local hours: the daily rhythms differ, the incidents' truth must not."""
    return START_MS + round(request.param * 3_600_000)


def series(
    scenarios: Path, name: str, duration_s: float | None = None, start_ms: int = START_MS
) -> dict[str, list[tuple[float, float]]]:
    sim = Simulation(load_scenario(scenarios / name), start_ms=start_ms, duration_s=duration_s)
    out: dict[str, list[tuple[float, float]]] = {}
    for _ in range(sim.sample_count):
        tick = sim.tick()
        for s in tick.samples:
            out.setdefault(s.device.sensor_id, []).append((tick.t_s, s.sample.value))
    return out


def first(points: list[tuple[float, float]], test: Callable[[float], bool]) -> float:
    return next(t for t, v in points if test(v))


def grade_reached(kind: str, points: list[tuple[float, float]]) -> int:
    """The most severe suggested grade of the kind's set points crossed anywhere in the series."""
    crossed = [p.grade for p in KINDS[kind].set_points for _, v in points if p.crossed(v)]
    return min(crossed, default=5)


def test_ebike_fire_heat_then_smoke_then_co_to_grade_2(scenarios: Path, start_ms: int) -> None:
    """Onsets in sequence (heat, smoke, CO); smoke then passes its alarm level first, as photoelectric
    detectors usually do in a battery fire."""
    s = series(scenarios, "ebike_fire.yaml", start_ms=start_ms)
    heat = first(s["temp-b1-f2c"], lambda v: v >= 22)
    smoke = first(s["smoke-b1-f2"], lambda v: v >= 0.05)
    co = first(s["co-b1-f2"], lambda v: v >= 30)
    assert heat < smoke < co
    assert first(s["smoke-b1-f2"], lambda v: v >= 0.15) < first(s["temp-b1-f2c"], lambda v: v >= 54)
    assert grade_reached("temperature", s["temp-b1-f2c"]) == 2 and grade_reached("co", s["co-b1-f2"]) == 2


def test_basement_flooding_reaches_the_garage(scenarios: Path, start_ms: int) -> None:
    s = series(scenarios, "basement_flooding.yaml", start_ms=start_ms)
    assert first(s["water-b2-ramp"], lambda v: v >= 0.10) < first(s["water-b2-basement"], lambda v: v >= 0.10)
    assert grade_reached("water-depth", s["water-b2-basement"]) == 2


def test_distribution_box_leaks_then_overheats(scenarios: Path, start_ms: int) -> None:
    s = series(scenarios, "distribution_box_overheat.yaml", start_ms=start_ms)
    assert first(s["rcm-b1-box1"], lambda v: v >= 0.3) < first(s["cable-b1-box1"], lambda v: v >= 70)
    assert grade_reached("residual-current", s["rcm-b1-box1"]) == 2
    assert grade_reached("cable-temperature", s["cable-b1-box1"]) == 2
    assert grade_reached("smoke", s["smoke-b1-elec"]) == 5, "no smoke: not yet a fire"


def test_elder_draws_no_water_for_fourteen_hours(scenarios: Path) -> None:
    meter = series(scenarios, "elder_no_water.yaml")["meter-b2-502"]
    during = [v for t, v in meter if 28_800 <= t <= 79_200]
    assert max(during) == min(during)
    assert meter[-1][1] - meter[0][1] > 0.02, "normal use before and after"


def test_manhole_jolts_then_displaced(scenarios: Path) -> None:
    s = series(scenarios, "manhole_displaced.yaml")
    jolts = [t for t, v in s["manhole-r1-tilt"] if v >= 10 and t < 590]
    assert jolts, "buses jolt the cover before it is displaced"
    assert all(v >= 15 for t, v in s["manhole-r1-tilt"] if 605 <= t < 890)
    assert first(s["manhole-r1-open"], lambda v: v == 1.0) == 601


def test_fire_main_runs_dry(scenarios: Path, start_ms: int) -> None:
    s = series(scenarios, "hydrant_pressure_loss.yaml", start_ms=start_ms)
    assert grade_reached("pressure", s["pressure-b1-main"]) == 2
    assert grade_reached("pressure", s["pressure-b1-roof"]) == 4, "a roof tank at 0.12 MPa is only below normal"


def test_lift_entrapment_lasts_twenty_minutes(scenarios: Path) -> None:
    s = series(scenarios, "lift_entrapment.yaml")
    trapped = [t for t, v in s["lift-b1-2-trap"] if v == 1.0]
    assert trapped[0] == 300 and trapped[-1] - trapped[0] == pytest.approx(1200, abs=1)
    assert first(s["lift-b1-2-ebike"], lambda v: v == 1.0) < trapped[0]


def test_quiet_month_has_nuisance_and_faults_but_no_incident(scenarios: Path, tmp_path: Path) -> None:
    out = tmp_path / "month.jsonl"
    count = write_truth(load_scenario(scenarios / "quiet_month.yaml"), out, start_ms=START_MS, duration_s=3 * 86_400)
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert count == 22 * 3 * 1440
    assert not [r for r in records if r["type"] == "incident"]
    assert {r["fault"] for r in records if r["type"] == "fault"} == {"spikes", "drift", "clock-skew"}
    fumes = [r for r in records if r["type"] == "reading" and r["sensor"] == "smoke-b1-f1" and r["value"] >= 0.15]
    assert fumes, "cooking fumes reach a smoke detector within three days"


def test_every_shipped_scenario_is_valid(scenarios: Path) -> None:
    names = sorted(p.name for p in scenarios.glob("*.yaml"))
    assert len(names) == 10
    for name in names:
        assert load_scenario(scenarios / name).gateways


def test_a_whole_community_from_the_deployment_file(scenarios: Path) -> None:
    deployment = scenarios.parents[1] / "deploy" / "demo" / "deployment.yaml"
    scenario = scenario_from_deployment(deployment, duration_s=10)
    assert scenario.community == "hongxing" and not scenario.incidents
    assert [(g.gateway_id, len(g.devices)) for g in scenario.gateways] == [("gw-b1", 10), ("gw-b2", 10)]
    assert scenario.gateways[0].devices[2].sensor_id == "gas-b1-301"
    with pytest.raises(ScenarioError, match="community"):
        scenario_from_deployment(scenarios / "quiet.yaml")
