"""bench/detection.py on tiny inputs: one incident scenario, one copy of the quiet month for a day, a small cost run."""

import io
from pathlib import Path

import numpy as np

from bench.detection import (
    SCENARIOS,
    START_MS,
    incident_results,
    quiet_month,
    report_incidents,
    report_month,
    report_throughput,
    throughput,
)
from bench.recording import cached_record, month_copy, record
from firmware_sim.runner import Simulation
from firmware_sim.scenario import load_scenario


def test_the_kitchen_gas_leak_is_detected_within_30_s_at_its_grade() -> None:
    results = incident_results([SCENARIOS / "kitchen_gas_leak.yaml"])
    assert [r.name for r in results] == ["kitchen-gas-leak-b1-301"]
    (leak,) = results
    assert leak.kind == "gas" and leak.truth == 2
    assert leak.set_point is not None and leak.set_point.value == 25.0  # the level-1 alarm, GB/T 50493
    assert leak.crossing_ms is not None and leak.crossing_ms > leak.start_ms
    assert leak.detected
    alarm = leak.after_s(leak.alarm_ms)
    assert alarm is not None and 0 <= alarm <= 30
    assert leak.within_norm
    assert leak.given == 2
    assert any(rule.startswith("level-1 alarm") for rule in leak.rules)
    out = io.StringIO()
    report_incidents(results, out)
    assert "1/1 detected" in out.getvalue() and "kitchen-gas-leak-b1-301: detected" in out.getvalue()


def test_a_recording_holds_what_the_simulation_produces(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "kitchen_gas_leak.yaml")
    made = record(scenario, start_ms=START_MS)
    sim = Simulation(scenario, start_ms=START_MS)
    for t in range(3):
        tick = sim.tick()
        assert made.nominal_ms[t] == tick.time_ms
        assert [made.samples[t, made.sensors.index(s.device.sensor_id)]["value"] for s in tick.samples] == [
            s.sample.value for s in tick.samples
        ]
    again = cached_record(scenario, start_ms=START_MS, cache_dir=tmp_path)
    assert np.array_equal(again.samples, made.samples)
    assert len(list(tmp_path.iterdir())) == 2


def test_copies_are_distinct_communities_with_the_same_faults() -> None:
    base = load_scenario(SCENARIOS / "quiet_month.yaml")
    first, second = month_copy(base, 0), month_copy(base, 1)
    ids = [d.sensor_id for g in (*first.gateways, *second.gateways) for d in g.devices]
    assert len(ids) == len(set(ids)) == 44
    assert first.seed != second.seed
    assert [(f.type, f.start_s) for f in first.faults] == [(f.type, f.start_s) for f in second.faults]
    assert all(f.sensor.startswith("c001-") for f in second.faults)


def test_a_day_of_the_quiet_month(tmp_path: Path) -> None:
    month = quiet_month(copies=1, days=1, processes=1, cache_dir=tmp_path)
    assert (month.sensors, month.days, month.sensor_days) == (22, 1.0, 22.0)
    assert month.readings == 22 * 1_440  # no dropout on day 1
    assert month.simulated == 1
    assert all(e.status == "firing" for e in month.events)
    assert len(month.serious) + len(month.minor) == len(month.events)
    assert sum(count for _, count in month.breakdown()) == len(month.events)
    out = io.StringIO()
    report_month(month, out)
    assert "per 1,000 sensor-days" in out.getvalue()
    assert quiet_month(copies=1, days=1, processes=1, cache_dir=tmp_path).simulated == 0  # from the cache


def test_cost_of_the_three_layers(tmp_path: Path) -> None:
    cost = throughput(sensors=50, warmup=31, repeats=3, cache_dir=tmp_path)
    assert cost["sensors"] == 50
    assert cost["readings_per_s"] > 0 and cost["scatter_per_s"] > 0 and cost["report_s"] > 0
    out = io.StringIO()
    report_throughput(cost, out)
    assert "M readings/s" in out.getvalue()
