"""Sensor health (layer 2 of detection): stuck, drift against neighbours, out of range, the detectors' own reports."""

import itertools
import json

import numpy as np
import pytest

from alerts.model import Grade, RiskEvent
from hub.detection.health import (
    DRIFT_LEARN_MS,
    DRIFT_TOLERANCE,
    OUT_OF_RANGE_CLEAR_MS,
    STUCK_MIN_MS,
    SensorHealth,
)
from hub.detection.observations import Observations
from hub.ingest.registry import SensorInfo
from protocol.kinds import KINDS
from protocol.telemetry import DeviceStatus

T0 = 1_790_000_000_000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def sensor(index: int, kind: str, gateway: str = "gw-1", name: str | None = None) -> SensorInfo:
    return SensorInfo(name or f"{kind}-{index}", gateway, KINDS[kind], f"1栋 {index}", "grid-1", None, index)


def health(*infos: SensorInfo, spaces: dict[str, str] | None = None) -> SensorHealth:
    return SensorHealth(community="hongxing", community_name="红星社区", sensors=list(infos), spaces=spaces or {})


def feed(h: SensorHealth, readings: "list[Reading]") -> list[RiskEvent]:
    """Readings in rounds of one minute of reading time (the hub's rounds are shorter; the layer must not care)."""
    events: list[RiskEvent] = []
    readings = sorted(readings, key=lambda r: r[1])
    start = 0
    while start < len(readings):
        end = start
        while end < len(readings) and readings[end][1] < readings[start][1] + MINUTE_MS:
            end += 1
        chunk = readings[start:end]
        events += h.observe_round(
            Observations(
                np.array([i.index for i, _, _ in chunk], np.intp),
                np.array([t for _, t, _ in chunk], np.int64),
                np.array([v for _, _, v in chunk], np.float64),
                [i for i, _, _ in chunk],
            )
        )
        start = end
    return events


Reading = tuple[SensorInfo, int, float]


def temperature(info: SensorInfo, start_ms: int, minutes: int, seed: int, offset: float = 0.0) -> list[Reading]:
    rng = np.random.default_rng(seed)
    hours = np.arange(minutes) / 60
    values = 22.0 + offset + 2.0 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 0.15, minutes)
    return [(info, start_ms + i * MINUTE_MS, round(float(v), 1)) for i, v in enumerate(values)]


def firing(events: list[RiskEvent], rule: str) -> list[RiskEvent]:
    return [e for e in events if e.rule == rule and e.status == "firing"]


def test_a_temperature_probe_frozen_for_hours_is_stuck_once_and_clears_when_it_moves() -> None:
    probe = sensor(0, "temperature")
    h = health(probe)
    normal = temperature(probe, T0, 2 * 24 * 60, seed=1)
    assert feed(h, normal) == []
    frozen_at = T0 + 2 * DAY_MS
    frozen = [(probe, frozen_at + i * MINUTE_MS, 23.4) for i in range(6 * 60)]
    events = feed(h, frozen)
    [fired] = firing(events, "stuck")
    assert fired.grade is Grade.IV and fired.key == "hongxing/temperature-0/health/stuck"
    assert fired.time_ms - frozen_at >= STUCK_MIN_MS
    assert fired.time_ms - frozen_at <= STUCK_MIN_MS + 5 * MINUTE_MS
    assert "unchanged" in fired.source and fired.rule_zh == "读数卡滞"
    after = feed(h, [(probe, frozen_at + 6 * HOUR_MS, 23.6), (probe, frozen_at + 6 * HOUR_MS + MINUTE_MS, 23.5)])
    assert [(e.rule, e.status) for e in after] == [("stuck", "cleared")]
    # the flagged spell did not teach it that six-hour runs are normal: the next one is flagged as soon
    again_at = frozen_at + 7 * HOUR_MS
    [second] = firing(feed(h, [(probe, again_at + i * MINUTE_MS, 24.0) for i in range(6 * 60)]), "stuck")
    assert second.time_ms - again_at <= fired.time_ms - frozen_at


def test_a_sensor_that_is_normally_flat_for_long_is_not_called_stuck() -> None:
    """A gas cell in clean air reads 0.0 for hours at a time: its own history says long runs are normal."""
    gas = sensor(0, "gas")
    h = health(gas)
    rng = np.random.default_rng(3)
    readings = []
    for day in range(6):
        for minute in range(24 * 60):
            t = T0 + day * DAY_MS + minute * MINUTE_MS
            busy = 11 * 60 <= minute < 13 * 60  # a bit of cooking at noon moves it, the rest is 0.0
            readings.append((gas, t, round(float(rng.uniform(0, 2)), 1) if busy else 0.0))
    assert firing(feed(h, readings), "stuck") == []


@pytest.mark.parametrize("kind", ["door-contact", "help-button", "water-meter"])
def test_two_state_detectors_and_meters_are_never_stuck(kind: str) -> None:
    info = sensor(0, kind)
    h = health(info)
    readings = [(info, T0 + i * MINUTE_MS, float(i % 2)) for i in range(2000)]
    readings += [(info, T0 + (2000 + i) * MINUTE_MS, 0.0) for i in range(5 * 24 * 60)]
    assert feed(h, readings) == []


def test_stuck_needs_a_whole_day_of_history_and_a_gap_starts_a_new_run() -> None:
    probe = sensor(0, "temperature")
    h = health(probe)
    young = [(probe, T0 + 12 * HOUR_MS + i * MINUTE_MS, 20.0) for i in range(300)]
    assert feed(h, temperature(probe, T0, 12 * 60, seed=2) + young) == []
    later = T0 + 2 * DAY_MS
    feed(h, [*temperature(probe, later, 24 * 60, seed=4), (probe, later + DAY_MS, 23.0)])
    back = later + DAY_MS + 4 * HOUR_MS  # four silent hours, then the same value for 1.5 h: not a 5.5 h run
    assert feed(h, [(probe, back + i * MINUTE_MS, 23.0) for i in range(100)]) == []
    assert firing(feed(h, [(probe, back + i * MINUTE_MS, 23.0) for i in range(100, 200)]), "stuck")


def test_a_sensor_reporting_once_a_day_is_never_judged_stuck() -> None:
    """Defined behaviour: ``stuck`` is judged by time (how long one value has lasted between readings), and readings
    further apart than ``STUCK_GAP_MS`` (3 h) do not make one run. So a sensor read once a day never has a run, is
    never judged stuck, and does not learn from its daily readings: equal values on consecutive days (a cellar's
    temperature, a quiet meter) are no evidence either way. A daily sensor that really froze is not caught here; its
    silence is the ingest liveness check's, and its level the rules' and the anomaly detector's."""
    probe = sensor(0, "temperature")
    h = health(probe)
    rng = np.random.default_rng(17)
    days = [round(float(v), 1) for v in 14.0 + rng.normal(0, 1.0, 60)]  # two months of different values: 60 changes
    days += [days[-1]] * 30  # then the same value for a month
    at_noon = T0 + 4 * HOUR_MS
    assert feed(h, [(probe, at_noon + day * DAY_MS, v) for day, v in enumerate(days)]) == []
    # Nothing was learnt from the daily readings: read every minute from now on, it starts afresh (a day's warm-up).
    later = at_noon + len(days) * DAY_MS
    assert feed(h, [(probe, later + i * MINUTE_MS, 14.2) for i in range(12 * 60)]) == []


def test_a_detector_drifting_from_its_neighbours_is_named_and_they_are_not() -> None:
    a, b, c = (sensor(i, "co") for i in range(3))
    h = health(a, b, c, spaces={"co-0": "b1-garage", "co-1": "b1-garage", "co-2": "b1-garage"})
    rng = np.random.default_rng(5)
    readings = []
    days = 6
    for minute in range(days * 24 * 60):
        t = T0 + minute * MINUTE_MS
        drift = 0.0 if minute < 3 * 24 * 60 else (minute - 3 * 24 * 60) / 60 * 0.5  # 12 ppm a day from day 3
        for info, offset in ((a, 0.0), (b, 1.0), (c, -1.0)):
            value = 3.0 + offset + rng.normal(0, 0.6) + (drift if info is a else 0.0)
            readings.append((info, t, max(0.0, round(float(value)))))
    events = feed(h, readings)
    fired = firing(events, "drift")
    assert [e.sensor for e in fired] == ["co-0"]
    # 15 ppm past the normal offset, through a 6 h mean: between day 4 and day 5 of the run
    assert T0 + 3 * DAY_MS + 30 * HOUR_MS < fired[0].time_ms < T0 + 3 * DAY_MS + 48 * HOUR_MS
    assert "tolerance 15" in fired[0].source


def test_a_constant_offset_between_neighbours_is_learned_not_reported() -> None:
    a, b = sensor(0, "temperature"), sensor(1, "temperature")
    h = health(a, b, spaces={"temperature-0": "lobby", "temperature-1": "lobby"})
    readings = temperature(a, T0, 5 * 24 * 60, seed=6) + temperature(b, T0, 5 * 24 * 60, seed=7, offset=3.5)
    assert firing(feed(h, readings), "drift") == []
    assert DRIFT_TOLERANCE["temperature"] < 3.5  # the offset alone would be reported if it were not learned
    assert DRIFT_LEARN_MS < 5 * DAY_MS


def test_a_neighbour_that_went_silent_is_not_a_reference() -> None:
    a, b = sensor(0, "temperature"), sensor(1, "temperature")
    h = health(a, b, spaces={"temperature-0": "lobby", "temperature-1": "lobby"})
    readings = temperature(a, T0, 3 * 24 * 60, seed=10) + temperature(b, T0, 3 * 24 * 60, seed=11)
    # b stops reporting; then the heating goes on and a reads 4 °C warmer for two days
    readings += temperature(a, T0 + 3 * DAY_MS, 2 * 24 * 60, seed=12, offset=4.0)
    assert firing(feed(h, readings), "drift") == []


def test_detectors_own_reports_open_and_close_their_conditions() -> None:
    smoke, gas, other = sensor(0, "smoke"), sensor(1, "gas"), sensor(2, "smoke", gateway="gw-2")
    h = health(smoke, gas, other)
    events = h.observe_devices(
        "gw-1",
        T0,
        [DeviceStatus("smoke-0", 3, 7, 0x0001, 0), DeviceStatus("gas-1", 3, 90, 0x0002, 0)],
    )
    assert sorted((e.sensor, e.rule, e.status) for e in events) == [
        ("gas-1", "tamper", "firing"),
        ("smoke-0", "low-battery", "firing"),
    ]
    battery = next(e for e in events if e.rule == "low-battery")
    assert battery.value == 7.0 and battery.unit == "%" and battery.grade is Grade.IV
    still = h.observe_devices("gw-1", T0 + MINUTE_MS, [DeviceStatus("smoke-0", 3, 7, 0x0001, 0)])
    assert [(e.sensor, e.rule, e.status) for e in still] == [("gas-1", "tamper", "cleared")]
    cleared = h.observe_devices("gw-1", T0 + 2 * MINUTE_MS, [DeviceStatus("smoke-0", 1, 100, 0, 0)])
    assert [(e.sensor, e.rule, e.status) for e in cleared] == [("smoke-0", "low-battery", "cleared")]
    assert h.observe_devices("gw-2", T0, [DeviceStatus("smoke-2", 4, 100, 0, 0)])[0].rule == "shielded"
    assert h.observe_devices("gw-1", T0, [DeviceStatus("gas-1", 3, 100, 0, 0)])[0].rule == "device-fault"
    assert h.unknown("gw-1", [DeviceStatus("smoke-2", 1, 100, 0, 0), DeviceStatus("nope", 1, 100, 0, 0)]) == [
        "smoke-2",
        "nope",
    ]


def test_a_battery_at_the_low_level_without_the_flag_is_low() -> None:
    smoke = sensor(0, "smoke")
    h = health(smoke)
    [event] = h.observe_devices("gw-1", T0, [DeviceStatus("smoke-0", 1, 20, 0, 0)])
    assert event.rule == "low-battery"
    assert h.observe_devices("gw-1", T0, [DeviceStatus("smoke-0", 1, 21, 0, 0)])[0].status == "cleared"


def test_out_of_range_from_the_gateway_count_or_the_hub_clears_after_a_quiet_hour() -> None:
    gas = sensor(0, "gas")
    h = health(gas)
    assert h.observe_devices("gw-1", T0, [DeviceStatus("gas-0", 1, 100, 0, 2)])[0].rule == "out-of-range"
    assert h.observe_devices("gw-1", T0 + MINUTE_MS, [DeviceStatus("gas-0", 1, 100, 0, 2)]) == []
    assert h.observe_devices("gw-1", T0 + 2 * MINUTE_MS, [DeviceStatus("gas-0", 1, 100, 0, 5)]) == []
    [cleared] = h.observe_devices("gw-1", T0 + 2 * MINUTE_MS + OUT_OF_RANGE_CLEAR_MS, [])
    assert (cleared.rule, cleared.status) == ("out-of-range", "cleared")
    [again] = h.observe_out_of_range([(gas, T0 + 3 * HOUR_MS, 180.0)])
    assert (again.rule, again.status, again.value) == ("out-of-range", "firing", 180.0)
    assert feed(h, [(gas, T0 + 3 * HOUR_MS + 30 * MINUTE_MS, 0.5)]) == []
    assert firing(feed(h, [(gas, T0 + 4 * HOUR_MS + MINUTE_MS, 0.5)]), "out-of-range") == []


def test_state_survives_a_restart_without_a_second_event() -> None:
    probe, smoke = sensor(0, "temperature"), sensor(1, "smoke")
    h = health(probe, smoke)
    feed(h, temperature(probe, T0, 2 * 24 * 60, seed=8))
    h.observe_devices("gw-1", T0, [DeviceStatus("smoke-1", 3, 5, 1, 0)])
    frozen_at = T0 + 2 * DAY_MS
    frozen = [(probe, frozen_at + i * MINUTE_MS, 21.7) for i in range(8 * 60)]
    whole = firing(feed(h, frozen[:180]), "stuck")
    assert len(whole) == 1
    state = json.loads(json.dumps(h.to_state()))
    again = health(probe, smoke)
    again.restore(state)
    assert feed(again, frozen[180:]) == []
    assert again.observe_devices("gw-1", T0 + HOUR_MS, [DeviceStatus("smoke-1", 3, 5, 1, 0)]) == []
    split = health(probe, smoke)
    split.restore(json.loads(json.dumps(state)))
    assert split.to_state() == state


def test_a_state_of_another_community_is_refused() -> None:
    h = health(sensor(0, "gas"))
    state = h.to_state()
    other = SensorHealth(community="qingyang", community_name="青羊", sensors=[sensor(0, "gas")], spaces={})
    with pytest.raises(ValueError, match="hongxing"):
        other.restore(state)


def test_nan_and_out_of_order_readings_are_ignored() -> None:
    probe = sensor(0, "temperature")
    h = health(probe)
    readings = temperature(probe, T0, 2 * 24 * 60, seed=9)
    feed(h, readings)
    before = h.to_state()
    assert feed(h, [(probe, T0 + DAY_MS, 30.0), (probe, T0 + 2 * DAY_MS, float("nan"))]) == []
    assert h.to_state()["sensors"] == before["sensors"]


def test_a_lone_co_cell_creeping_up_is_drift_long_before_an_alarm_level() -> None:
    """The quiet month's ageing CO cell, 2 ppm a day from a clean 2 ppm, alone in its kitchen: no neighbour to
    compare with, so its own first days are the reference; 15 ppm above them is a maintenance call (day ~9), while
    the rules' 30 ppm sustained-low level is only reached on day ~14."""
    co = sensor(0, "co")
    h = health(co)
    rng = np.random.default_rng(14)
    minutes = np.arange(16 * 24 * 60)
    values = np.maximum(0.0, np.round(2.0 + minutes / 1440 * 2.0 + rng.normal(0, 0.6, len(minutes))))
    events = feed(h, [(co, T0 + int(m) * MINUTE_MS, float(v)) for m, v in zip(minutes, values, strict=True)])
    [fired] = firing(events, "drift")
    assert 8 * DAY_MS < fired.time_ms - T0 < 11 * DAY_MS
    assert "its own level over its first 2 days" in fired.source


def test_a_lone_kitchen_gas_detector_with_daily_cooking_is_not_drift() -> None:
    gas = sensor(0, "gas")
    h = health(gas)
    rng = np.random.default_rng(15)
    readings = []
    for minute in range(20 * 24 * 60):
        local_hour = (minute // 60 + 8) % 24
        cooking = 3.0 if local_hour in (11, 12, 18, 19) else 0.0  # %LEL of fumes near the hob
        readings.append((gas, T0 + minute * MINUTE_MS, round(max(0.0, 0.5 + cooking + rng.normal(0, 0.1)), 1)))
    assert firing(feed(h, readings), "drift") == []


def ageing_co(co: SensorInfo, days: int, seed: int) -> list[Reading]:
    """A clean CO cell (2 ppm) creeping up 2 ppm a day, one reading a minute, whole ppm."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(days * 24 * 60)
    values = np.maximum(0.0, np.round(2.0 + minutes / 1440 * 2.0 + rng.normal(0, 0.6, len(minutes))))
    return [(co, T0 + int(m) * MINUTE_MS, float(v)) for m, v in zip(minutes, values, strict=True)]


def correction(h: SensorHealth, info: SensorInfo, at_ms: int) -> float:
    """How much ``h`` would take off a reading of ``info`` now."""
    seen = Observations(np.array([info.index], np.intp), np.array([at_ms], np.int64), np.array([100.0]), [info])
    return 100.0 - float(h.corrected(seen).values[0])


def daily_corrections(h: SensorHealth, co: SensorInfo, readings: list[Reading]) -> list[float]:
    """The CO cell's correction at the end of each day of ``readings`` (fed a day at a time)."""
    per_day = 24 * 60
    out = []
    for start in range(0, len(readings), per_day):
        feed(h, readings[start : start + per_day])
        out.append(correction(h, co, readings[start + per_day - 1][1]))
    return out


def test_a_drifting_cell_is_judged_net_of_its_drift_and_the_correction_grows_no_faster_than_allowed() -> None:
    co = sensor(0, "co")
    h = health(co)
    daily = daily_corrections(h, co, ageing_co(co, 20, seed=16))
    opened = next(day for day, c in enumerate(daily) if c > 0)
    assert 7 <= opened <= 11, f"no correction before the drift condition opens (day ~9): {daily}"
    per_day = 15.0 / 7  # DRIFT_TOLERANCE["co"] a week
    assert all(b - a <= per_day + 1e-9 for a, b in itertools.pairwise(daily)), daily
    raw = 2.0 + 20 * 2.0
    assert raw - daily[-1] < 30.0, "the corrected reading must stay under EN 50291's 30 ppm start"
    assert "upward drift of" in h.correction_note("co-0") and h.correction_note("gas-9") == ""


def test_a_real_leak_on_a_drifting_cell_is_not_absorbed() -> None:
    co = sensor(0, "co")
    h = health(co)
    readings = ageing_co(co, 14, seed=17)
    feed(h, readings)
    start = T0 + 14 * DAY_MS
    before = correction(h, co, start)
    assert before > 0
    feed(h, [(co, start + m * MINUTE_MS, 150.0) for m in range(120)])  # two hours of a real 150 ppm leak
    grown = correction(h, co, start + 120 * MINUTE_MS) - before
    assert grown <= 15.0 / 7 * (2 / 24) + 1e-9, f"the leak grew the correction by {grown} ppm in 2 h"


def test_the_correction_survives_a_restart_and_older_states_load_without_it() -> None:
    co = sensor(0, "co")
    h = health(co)
    readings = ageing_co(co, 14, seed=18)
    feed(h, readings)
    now = readings[-1][1]
    assert correction(h, co, now) > 0
    state = json.loads(json.dumps(h.to_state()))
    again = health(co)
    again.restore(state)
    assert correction(again, co, now) == correction(h, co, now)
    state["sensors"]["co-0"] = state["sensors"]["co-0"][:12]  # saved before the correction existed
    older = health(co)
    older.restore(state)
    assert correction(older, co, now) == 0.0
