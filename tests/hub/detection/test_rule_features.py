"""One table per rule feature: level with hysteresis, duration, delay-on/off, rate of rise, CO exposure, counts
in a window, schedules, gaps; and hypothesis properties of hysteresis, duration and delay-off."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.detection.rules.exposure import DoseCurve
from hub.detection.rules.model import default_rules
from tests.hub.detection.support import T0, every, make_rule, run

LEVEL = {"level": {"above": 25.0}, "hysteresis": {"clear": 20.0}}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([10, 26, 24, 21, 19, 26, 30, 19], [(10, "firing"), (40, "cleared"), (50, "firing"), (70, "cleared")]),
        ([24.9, 25.0, 20.0, 19.99], [(10, "firing"), (30, "cleared")]),  # set point inclusive, clear strict
        ([26, 21, 26, 21, 26, 21], [(0, "firing")]),  # hovering inside the band: one event, no flapping
        ([1, 2, 3, 24.99], []),
    ],
)
def test_level_with_hysteresis(values: list[float], expected: list[tuple[float, str]]) -> None:
    assert run(make_rule(**LEVEL), every(10, values)) == expected


def test_below_rule_uses_a_clear_level_above_the_set_point() -> None:
    rule = make_rule(kind="pressure", level={"below": 100_000.0}, hysteresis={"clear": 110_000.0})
    values = [150_000, 99_000, 105_000, 111_000, 100_000]
    assert run(rule, every(10, values)) == [(10, "firing"), (30, "cleared"), (40, "firing")]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([26, 26, 26, 26, 26], [(30, "firing")]),  # held 30 s: fires at the first reading 30 s into the run
        ([26, 26, 24, 26, 26, 26, 26], [(60, "firing")]),  # a dip below the set point restarts the run
        ([26, 26, 26, 26, 22, 19], [(30, "firing"), (50, "cleared")]),  # clears at the clear level
        ([26, 26, 24], []),
    ],
)
def test_duration(values: list[float], expected: list[tuple[float, str]]) -> None:
    assert run(make_rule(**LEVEL, duration_s=30), every(10, values)) == expected


@pytest.mark.parametrize(
    ("delay", "values", "expected"),
    [
        ({"on_s": 30}, [26, 22, 26, 26], [(30, "firing")]),  # the latch holds inside the band (unlike duration)
        ({"on_s": 30}, [26, 19, 26, 26, 26, 26], [(50, "firing")]),  # past the clear level: restarts
        ({"on_s": 30}, [26, 26, 19, 10], []),  # a 20 s fume never pages anyone
        ({"off_s": 30}, [26, 19, 19, 19, 19], [(0, "firing"), (40, "cleared")]),
        ({"off_s": 30}, [26, 19, 19, 26, 19, 19, 19, 19], [(0, "firing"), (70, "cleared")]),
        ({"on_s": 20, "off_s": 20}, [26, 26, 26, 10, 10, 10], [(20, "firing"), (50, "cleared")]),
    ],
)
def test_delay_on_and_off(delay: dict[str, float], values: list[float], expected: list[tuple[float, str]]) -> None:
    assert run(make_rule(**LEVEL, delay=delay), every(10, values)) == expected


RATE = {
    "kind": "temperature",
    "rate": {"rise_per_min": 4.0, "window_s": 60, "min_value": 30.0, "clear_per_min": 1.0},
}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # 6 °C/min from 30 °C: judged once the window spans 30 s, fires at once
        ([30, 31, 32, 33, 34, 35], [(30, "firing")]),
        # 2 °C/min never reaches 4 °C/min
        ([30 + i / 3 for i in range(30)], []),
        # the same fast rise below min_value is not judged (normal rooms cost nothing)
        ([20, 21, 22, 23, 24, 25], []),
        # a rise, then flat: the slope falls below clear_per_min once the window holds only the flat part
        ([30, 31, 32, 33, 34, 34, 34, 34, 34, 34, 34], [(30, "firing"), (100, "cleared")]),
        # dropping below min_value clears
        ([30, 31, 32, 33, 20], [(30, "firing"), (40, "cleared")]),
    ],
)
def test_rate_of_rise(values: list[float], expected: list[tuple[float, str]]) -> None:
    assert run(make_rule(**RATE), every(10, values)) == expected


CO = default_rules().rule("co-exposure")


@pytest.mark.parametrize(
    ("ppm", "earliest_min", "latest_min"),
    [
        (30.0, None, None),  # EN 50291: no alarm before 120 min (never, here)
        (50.0, 60.0, 90.0),
        (100.0, 10.0, 40.0),
        (300.0, 0.0, 3.0),
    ],
)
def test_co_exposure_meets_en_50291(ppm: float, earliest_min: float | None, latest_min: float | None) -> None:
    assert CO is not None
    rule = CO.model_copy(update={"group": None})
    events = run(rule, every(30, [0.0] + [ppm] * 480))  # a reading each 30 s for 4 h, CO from t = 30 s
    firing = [t for t, status in events if status == "firing"]
    if earliest_min is None:
        assert firing == []
        return
    assert latest_min is not None
    minutes = (firing[0] - 30) / 60
    assert earliest_min <= minutes <= latest_min, minutes


def test_co_exposure_clears_after_clean_air_and_never_flaps_on_the_way() -> None:
    assert CO is not None
    events = run(CO, every(60, [0.0] + [100.0] * 30 + [0.0] * 120))
    assert [s for _, s in events] == ["firing", "cleared"]
    cleared_after_min = (events[1][0] - 31 * 60) / 60
    assert 20 <= cleared_after_min <= 60  # dose ≤ cap 2 halves to 0.5 within two half-lives of 30 min


def test_dose_curve_is_the_documented_model() -> None:
    assert CO is not None and CO.exposure is not None
    curve = DoseCurve.of(CO.exposure)
    assert curve.minutes_to_alarm(30) == float("inf")
    assert curve.minutes_to_alarm(50) == pytest.approx(75)
    assert curve.minutes_to_alarm(100) == pytest.approx(25)
    assert curve.minutes_to_alarm(300) == pytest.approx(2)
    assert curve.minutes_to_alarm(1000) < 1


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # three jolts past 10° (each re-armed below 8°) within 10 min fire; the count clears once they age out
        ([0, 12, 0, 12, 0, 12, 0, 0, 0, 0, 0, 0], [(500, "firing"), (1100, "cleared")]),
        ([0, 12, 11, 12, 11, 12, 0], []),  # not back past the clear level: one crossing, not three
        ([0, 12, 0, 0, 0, 0, 0, 0, 12, 0, 12], []),  # spread over more than 10 min
    ],
)
def test_count_in_window(values: list[float], expected: list[tuple[float, str]]) -> None:
    rule = make_rule(
        kind="manhole-tilt",
        level={"above": 10.0},
        hysteresis={"clear": 8.0},
        count={"crossings": 3, "within_s": 600},
        grade="IV",
    )
    assert run(rule, every(50 if len(values) < 8 else 100, values)) == expected


def _shanghai_s(hour: int, minute: int = 0) -> float:
    """Seconds after T0 of the next hh:mm in Shanghai."""
    start = datetime.fromtimestamp(T0 / 1000, ZoneInfo("Asia/Shanghai"))
    moment = start.replace(hour=hour, minute=minute, second=0, microsecond=0)
    seconds = (moment - start).total_seconds()
    return seconds if seconds >= 0 else seconds + 86_400


@pytest.mark.parametrize(("hour", "fires"), [(23, True), (2, True), (12, False), (21, False), (6, False)])
def test_schedule_lowers_the_limit_at_night_in_local_time(hour: int, fires: bool) -> None:
    rule = make_rule(
        level={"above": 10.0},
        hysteresis={"clear": 8.0},
        schedule=[{"start": "22:00", "end": "06:00", "value": 8.0, "clear": 6.0}],
    )
    start = _shanghai_s(hour)
    events = run(rule, every(10, [0.0, 9.0], start_s=start))
    assert (events == [(start + 10, "firing")]) is fires


def test_a_gap_longer_than_max_gap_restarts_the_duration() -> None:
    rule = make_rule(**LEVEL, duration_s=300, max_gap_s=120)
    assert run(rule, [(0, 26), (600, 26), (700, 26)]) == []  # the 600 s gap: nobody knows it was held
    assert run(rule, [(0, 26), (100, 26), (200, 26), (300, 26)]) == [(300, "firing")]


# -- properties -----------------------------------------------------------------------------------------------

band_noise = st.lists(st.floats(min_value=20.0, max_value=24.99), min_size=1, max_size=200)
gaps = st.integers(min_value=1, max_value=120)


@settings(max_examples=150, deadline=None)
@given(noise=band_noise, step=gaps)
def test_hysteresis_never_flaps_on_noise_within_the_band(noise: list[float], step: int) -> None:
    rule = make_rule(**LEVEL)
    assert run(rule, every(step, noise)) == []  # idle: noise under the set point never fires
    assert run(rule, every(step, [30.0, *noise])) == [(0, "firing")]  # firing: noise over clear never clears


series = st.lists(st.tuples(st.integers(1, 40), st.floats(min_value=15, max_value=35)), min_size=1, max_size=150)


def _timed(steps: list[tuple[int, float]]) -> list[tuple[float, float]]:
    out, t = [], 0.0
    for step, value in steps:
        t += step
        out.append((t, value))
    return out


@settings(max_examples=150, deadline=None)
@given(steps=series, duration=st.integers(1, 200))
def test_duration_never_fires_earlier_than_the_duration(steps: list[tuple[int, float]], duration: int) -> None:
    data = _timed(steps)
    for t, status in run(make_rule(**LEVEL, duration_s=duration), data):
        if status != "firing":
            continue
        upto = [(s, v) for s, v in data if s <= t]
        run_start = t
        for s, v in reversed(upto):
            if v < 25.0:
                break
            run_start = s
        assert t - run_start >= duration, (t, run_start)


@settings(max_examples=150, deadline=None)
@given(steps=series, off=st.integers(1, 200))
def test_delay_off_never_clears_early(steps: list[tuple[int, float]], off: int) -> None:
    data = _timed(steps)
    for t, status in run(make_rule(**LEVEL, delay={"off_s": off}), data):
        if status != "cleared":
            continue
        upto = [(s, v) for s, v in data if s <= t]
        # walking back from t: only readings under the set point, down to one past the clear level ≥ off s ago
        released = None
        for s, v in reversed(upto):
            if v >= 25.0:
                break
            if v < 20.0:
                released = s
        assert released is not None and t - released >= off, (t, released)
