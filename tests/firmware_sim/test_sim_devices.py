"""Device models: deterministic noise, physical range, quantisation equal to the register decode."""

import itertools
from dataclasses import replace
from pathlib import Path

import pytest

from firmware_sim.devices import Detector
from firmware_sim.runner import Simulation
from firmware_sim.scenario import load_scenario
from protocol.kinds import KINDS
from protocol.registers import KIND_EXPONENTS, Status, from_raw, to_raw

START_MS = 1_750_000_000_000


def _records(path: Path, *, seed: int | None = None, ticks: int = 30) -> list[dict[str, object]]:
    sim = Simulation(load_scenario(path), start_ms=START_MS, seed=seed)
    records = []
    for _ in range(ticks):
        records.extend(sim.truth_records(sim.tick()))
    return records


def test_same_seed_gives_identical_truth(scenarios: Path) -> None:
    path = scenarios / "kitchen_gas_leak.yaml"
    first = _records(path)
    assert first == _records(path)
    assert len(first) == 30 * 20 + 1  # 20 devices x 30 ticks + the incident line


def test_other_seed_gives_other_noise(scenarios: Path) -> None:
    path = scenarios / "quiet.yaml"
    assert _records(path, seed=1) != _records(path, seed=2)


def test_sensors_do_not_share_a_noise_stream() -> None:
    a = Detector(sensor_id="gas-a", kind=KINDS["gas"], scenario_seed=7)
    b = Detector(sensor_id="gas-b", kind=KINDS["gas"], scenario_seed=7)
    values_a = [a.sample(time_ms=i).raw for i in range(50)]
    values_b = [b.sample(time_ms=i).raw for i in range(50)]
    assert values_a != values_b


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_noise_stays_in_physical_range(kind: str) -> None:
    spec = KINDS[kind]
    span = spec.maximum - spec.minimum
    # A baseline at the bottom of the range with huge noise must still never leave the range.
    detector = Detector(sensor_id=f"x-{kind}", kind=spec, scenario_seed=3, baseline=spec.minimum, noise_sd=span / 2)
    values = [detector.sample(time_ms=i).value for i in range(2000)]
    assert min(values) >= spec.minimum
    assert max(values) <= spec.maximum
    assert min(values) == spec.minimum  # the clamp was exercised


def test_water_depth_baseline_is_never_negative() -> None:
    detector = Detector(sensor_id="water-1", kind=KINDS["water-depth"], scenario_seed=11)
    values = [detector.sample(time_ms=i).value for i in range(1000)]
    assert min(values) >= 0.0
    assert max(values) < 0.02


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_value_is_exactly_the_register_decode(kind: str) -> None:
    detector = Detector(sensor_id=f"q-{kind}", kind=KINDS[kind], scenario_seed=5)
    exponent = KIND_EXPONENTS[kind]
    for i in range(500):
        sample = detector.sample(time_ms=i, excursion=(i % 50) * 0.37)
        assert sample.value == from_raw(sample.raw, exponent)
        assert sample.value == from_raw(to_raw(sample.value, exponent), exponent)
        assert sample.seq == i + 1


def test_status_follows_local_alarm_with_hysteresis() -> None:
    detector = Detector(sensor_id="gas-h", kind=KINDS["gas"], scenario_seed=1, noise_sd=0.0)
    assert detector.sample(time_ms=0, excursion=10.0).status == Status.NORMAL
    entered = detector.sample(time_ms=1, excursion=30.0)
    assert (entered.status, entered.alarm_entered) == (Status.ALARM, True)
    assert detector.sample(time_ms=2, excursion=22.0).status == Status.ALARM  # above the 20 %LEL clear level
    cleared = detector.sample(time_ms=3, excursion=5.0)
    assert (cleared.status, cleared.alarm_cleared) == (Status.NORMAL, True)
    assert detector.header().counter == 4


def test_baseline_outside_range_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        Detector(sensor_id="t", kind=KINDS["smoke"], scenario_seed=1, baseline=-1.0)


def test_duration_override_bounds_sampling(scenarios: Path) -> None:
    scenario = replace(load_scenario(scenarios / "quiet.yaml"), sample_interval_s=0.5)
    sim = Simulation(scenario, start_ms=START_MS, duration_s=3.0)
    assert sim.sample_count == 6
    for _ in range(6):
        sim.tick()
    with pytest.raises(IndexError):
        sim.tick()


def test_water_meter_counts_up_with_the_daily_rhythm() -> None:
    """An elder's meter only ever rises, more at 07:00-09:00 local time than at 02:00-04:00 (UTC+8)."""
    meter = Detector(sensor_id="meter-1", kind=KINDS["water-meter"], scenario_seed=3)
    midnight_local_ms = 1_764_345_600_000  # 2025-11-29 00:00 in Chengdu (16:00 UTC the day before)
    values = [meter.sample(time_ms=midnight_local_ms + minute * 60_000).value for minute in range(24 * 60)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    night = values[4 * 60] - values[2 * 60]
    morning = values[9 * 60] - values[7 * 60]
    assert morning > 5 * night
    assert 0.03 < values[-1] - values[0] < 0.3, "about 100 L a day"
