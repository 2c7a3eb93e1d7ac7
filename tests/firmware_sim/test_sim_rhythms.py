"""Rhythms of normal life, measured from generated samples: each has the documented sign, size and hours, none
moves the detector's noise stream, incidents take their sensors over, and a whole quiet month of them crosses
no set point."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from firmware_sim.devices import DEFAULT_BASELINES, Detector
from firmware_sim.faults import FaultType
from firmware_sim.rhythms import CO_MEALS, CookingBumps, local_day, minute_of_week
from firmware_sim.runner import Simulation
from firmware_sim.scenario import load_scenario
from protocol.kinds import KINDS

MONDAY_MS = 1_764_518_400_000
"""2025-12-01 00:00 in Chengdu (UTC+8), a Monday."""
MINUTE_MS = 60_000
WEEKDAYS = slice(0, 5)
WEEKEND = slice(5, 7)
RHYTHM_KINDS = ("temperature", "co", "gas", "residual-current", "cable-temperature", "pressure")

Days = npt.NDArray[np.float64]
"""Samples as ``[local day since MONDAY_MS, minute of the local day]``."""


def days_of(kind: str, *, days: int = 7, sensor_id: str | None = None, seed: int = 11, rhythm: bool = True) -> Days:
    """One sample a minute from Monday 00:00 local time for ``days`` days, as [day, minute]."""
    detector = Detector(sensor_id=sensor_id or f"{kind}-r", kind=KINDS[kind], scenario_seed=seed, rhythm=rhythm)
    values = [detector.sample(time_ms=MONDAY_MS + m * MINUTE_MS).value for m in range(days * 1440)]
    return np.array(values, dtype=np.float64).reshape(days, 1440)


def mean_at(samples: Days, hour: float, *, days: slice = slice(None), width_h: float = 1.0) -> float:
    """Mean over the window ``[hour, hour + width_h)`` of local time on the chosen days."""
    start = round(hour * 60)
    return float(samples[days, start : start + round(width_h * 60)].mean())


def daily_peak_minute(samples: Days) -> tuple[float, float]:
    """(local minute of the day, amplitude) of the 24 h fundamental of the mean daily profile."""
    profile = samples.mean(axis=0)
    component = np.sum(profile * np.exp(-2j * np.pi * np.arange(1440) / 1440))
    return float((-np.angle(component)) % (2 * np.pi) / (2 * np.pi) * 1440), float(abs(component) / 720)


def test_the_clock_is_local_time_in_shanghai() -> None:
    assert minute_of_week(MONDAY_MS) == 0.0
    assert minute_of_week(MONDAY_MS - MINUTE_MS) == 7 * 1440 - 1  # Sunday 23:59
    assert minute_of_week(MONDAY_MS + (5 * 24 + 19) * 3_600_000) == 5 * 1440 + 19 * 60  # Saturday 19:00
    assert local_day(MONDAY_MS) - local_day(MONDAY_MS - 1) == 1  # midnight local, 16:00 UTC


def test_indoor_temperature_is_warmest_late_afternoon() -> None:
    temperature = days_of("temperature")
    hourly = [mean_at(temperature, h) for h in range(24)]
    assert 2.5 < mean_at(temperature, 16) - mean_at(temperature, 4) < 3.5, "a 3 °C daily swing"
    assert int(np.argmax(hourly)) in (15, 16, 17) and int(np.argmin(hourly)) in (3, 4, 5)
    assert abs(float(temperature.mean()) - 22.0) < 0.2, "the baseline stays the daily mean"


def test_co_rises_at_meals_and_stays_far_below_any_set_point() -> None:
    co = days_of("co", days=28)
    night = mean_at(co, 2, width_h=3)
    assert abs(night - 2.0) < 0.3, "clean air at night"
    assert 0.3 < mean_at(co, 7) - night < 2.5, "breakfast"
    assert 0.5 < mean_at(co, 12) - night < 3.5, "lunch"
    assert 1.5 < mean_at(co, 18.75) - night < 6.0, "dinner, the largest"
    assert mean_at(co, 18.75) > mean_at(co, 12) > mean_at(co, 15)
    assert co.max() < 20.0 < KINDS["co"].set_points[0].value


def test_gas_cooking_bumps_are_rare_short_at_meals_and_below_pre_warning() -> None:
    episodes: list[tuple[int, int]] = []  # (start minute of the day, length in minutes)
    peaks = []
    for n in range(6):
        gas = days_of("gas", days=30, sensor_id=f"gas-b1-{n}01").ravel()
        high = np.flatnonzero(gas >= 1.2)  # 7 noise sd above the 0.5 %LEL baseline
        for run in np.split(high, np.flatnonzero(np.diff(high) > 1) + 1) if high.size else []:
            episodes.append((int(run[0]) % 1440, run.size))
            peaks.append(float(gas[run].max()))
    assert 6 <= len(episodes) <= 40, f"a few a month per detector: {len(episodes)} in 6 detector-months"
    meals = (7 * 60, 12 * 60, 18 * 60 + 30)
    assert all(min(abs(start - meal) for meal in meals) <= 60 for start, _ in episodes), episodes
    assert all(length <= 12 for _, length in episodes), "minutes, not hours"
    assert max(peaks) < KINDS["gas"].set_points[0].value, "below the 10 %LEL pre-warning"


def test_residual_current_follows_household_load() -> None:
    current = days_of("residual-current")
    evening, night = mean_at(current, 20), mean_at(current, 3)
    assert 0.03 < evening - night < 0.05, "40 mA between the night trough and the evening peak"
    assert 0.095 < night < 0.115 and 0.135 < evening < 0.155
    weekend_day = mean_at(current, 10, days=WEEKEND, width_h=6)
    assert weekend_day - mean_at(current, 10, days=WEEKDAYS, width_h=6) > 0.006, "people are home at weekends"
    assert current.max() < KINDS["residual-current"].set_points[0].value


def test_cable_temperature_follows_the_load_an_hour_or_more_late() -> None:
    cable = days_of("cable-temperature", sensor_id="cable-b1-box1")
    current = days_of("residual-current", sensor_id="rcm-b1-box1")
    assert 6.0 < mean_at(cable, 21) - mean_at(cable, 4) < 9.0, "an 8 °C daily swing"
    cable_peak, cable_amplitude = daily_peak_minute(cable)
    load_peak, _ = daily_peak_minute(current)
    assert cable_amplitude > 2.0
    # I²R heating peaks ~35 min after the load's fundamental, the 60 min thermal lag adds ~60 min more
    assert 70 < cable_peak - load_peak < 140, (cable_peak, load_peak)


def test_fire_main_pressure_is_highest_at_night_and_dips_at_demand_peaks() -> None:
    pressure = days_of("pressure")
    night = mean_at(pressure, 3)
    assert 30_000 < night - mean_at(pressure, 7, days=WEEKDAYS) < 48_000, "weekday morning peak"
    assert 25_000 < night - mean_at(pressure, 19, width_h=2) < 48_000, "evening peak"
    assert mean_at(pressure, 7, days=WEEKEND) - mean_at(pressure, 7, days=WEEKDAYS) > 15_000, "later at weekends"
    assert mean_at(pressure, 10, days=WEEKDAYS) - mean_at(pressure, 10, days=WEEKEND) > 10_000
    assert pressure.min() > KINDS["pressure"].set_points[0].value + 90_000


@pytest.mark.parametrize("kind", ["water-depth", "smoke", "manhole-tilt", "structural-tilt"])
def test_kinds_without_a_daily_rhythm_stay_flat(kind: str) -> None:
    samples = days_of(kind)
    hourly = [mean_at(samples, h) for h in range(24)]
    assert max(hourly) - min(hourly) < DEFAULT_BASELINES[kind][1]


@pytest.mark.parametrize("kind", RHYTHM_KINDS)
def test_rhythm_false_keeps_a_detector_flat(kind: str) -> None:
    samples = days_of(kind, rhythm=False)
    hourly = [mean_at(samples, h) for h in range(24)]
    assert max(hourly) - min(hourly) < DEFAULT_BASELINES[kind][1]


@pytest.mark.parametrize("kind", RHYTHM_KINDS)
def test_the_rhythm_leaves_the_noise_stream_alone(kind: str) -> None:
    """Same seed and sensor with and without the rhythm: the difference is the rhythm, sample for sample."""
    spec = KINDS[kind]
    with_rhythm = Detector(sensor_id="x-1", kind=spec, scenario_seed=4, baseline=DEFAULT_BASELINES[kind][0] + 1)
    flat = Detector(sensor_id="x-1", kind=spec, scenario_seed=4, baseline=DEFAULT_BASELINES[kind][0] + 1, rhythm=False)
    assert with_rhythm.rhythm is not None
    resolution = 10.0**with_rhythm.exponent
    for minute in range(0, 2 * 1440, 7):
        time_ms = MONDAY_MS + minute * MINUTE_MS
        difference = with_rhythm.sample(time_ms=time_ms).value - flat.sample(time_ms=time_ms).value
        assert difference == pytest.approx(with_rhythm.rhythm.at(time_ms), abs=resolution)


def test_cooking_is_drawn_per_household_and_reproducibly() -> None:
    def days(sensor_id: str, seed: int = 1) -> list[tuple[tuple[float, float, float], ...]]:
        bumps = CookingBumps(meals=CO_MEALS, decay_tau_min=20.0, scenario_seed=seed, sensor_id=sensor_id, stream="co")
        return [bumps.bumps(local_day(MONDAY_MS) + d) for d in range(14)]

    assert days("co-101") == days("co-101")
    assert days("co-101") != days("co-201")
    assert days("co-101") != days("co-101", seed=2)
    meals = [m for day in days("co-101") for m in day]
    assert 14 <= len(meals) < 42, "most days, not every meal"


def test_the_rhythm_is_a_function_of_time_not_of_the_sample_interval() -> None:
    fine = Detector(sensor_id="co-1", kind=KINDS["co"], scenario_seed=3)
    coarse = Detector(sensor_id="co-1", kind=KINDS["co"], scenario_seed=3)
    assert fine.rhythm is not None and coarse.rhythm is not None
    times = [MONDAY_MS + m * MINUTE_MS for m in range(0, 1440, 10)]
    assert [fine.rhythm.at(t) for t in times[::-1]] == [coarse.rhythm.at(t) for t in times][::-1]


@pytest.mark.parametrize("hour", [3.0, 8.0, 20.0])
def test_an_incident_takes_its_sensor_over_whatever_the_hour(scenarios: Path, hour: float) -> None:
    """A valve shut at night (when demand would lift the main by ~17 kPa) still reads a dry main."""
    scenario = load_scenario(scenarios / "hydrant_pressure_loss.yaml")
    sim = Simulation(scenario, start_ms=MONDAY_MS + round(hour * 3_600_000))
    (incident,) = scenario.incidents
    held = []
    for _ in range(sim.sample_count):
        tick = sim.tick()
        for s in tick.samples:
            if s.device.sensor_id == "pressure-b1-main" and incident.weight(tick.t_s) == 1.0:
                held.append(s.sample.value)
    assert held and abs(float(np.mean(held)) - incident.ramp_to) < 2_000


def test_a_quiet_month_of_rhythms_alone_crosses_no_set_point(scenarios: Path) -> None:
    """The whole of quiet_month.yaml on the simulation clock, without its listed nuisance faults (spikes: fumes,
    steam, buses; drift: an ageing CO cell), which are there to cross set points: rhythm and noise alone
    never reach any set point of any kind, grade IV included, nor a device's local alarm."""
    month = load_scenario(scenarios / "quiet_month.yaml")
    nuisance = {FaultType.SPIKES, FaultType.DRIFT}
    assert {f.sensor for f in month.faults if f.type in nuisance} == {
        "smoke-b1-f1",
        "smoke-b1-f2",
        "manhole-r1-tilt",
        "co-b1-101",
    }
    quiet = replace(month, faults=tuple(f for f in month.faults if f.type not in nuisance))
    sim = Simulation(quiet, start_ms=MONDAY_MS)
    assert sim.sample_count == 30 * 1440
    crossed: list[tuple[str, float, float]] = []
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for _ in range(sim.sample_count):
        tick = sim.tick()
        for s in tick.samples:
            sensor, value = s.device.sensor_id, s.sample.value
            if s.sample.alarm_entered or any(p.crossed(value) for p in s.device.kind.set_points):
                crossed.append((sensor, tick.t_s, value))
            low[sensor] = min(low.get(sensor, value), value)
            high[sensor] = max(high.get(sensor, value), value)
    assert not crossed, crossed[:10]
    # the rhythms were there: each quiet sensor with one swung by about its documented amplitude
    assert high["temp-b1-101"] - low["temp-b1-101"] > 3.0
    assert high["cable-b1-box1"] - low["cable-b1-box1"] > 8.0
    assert high["rcm-b1-box1"] - low["rcm-b1-box1"] > 0.04
    assert high["pressure-b2-main"] - low["pressure-b2-main"] > 40_000
    assert high["co-b1-101"] > 8.0 and max(high[f"gas-b1-{n}01"] for n in (1, 2, 3)) > 1.5
