"""The engine across sensors: grouped conditions, screening equals judging everything, causality, restart
state, bad input (NaN, out of order), corroboration and context grades."""

import json
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from alerts.model import Grade, RiskEvent
from hub.detection.rules import RuleEngine, SensorContext, default_rules
from hub.ingest.registry import SensorInfo
from tests.hub.detection.support import T0, contexts, every, feed, sensor

KINDS_CYCLE = ("gas", "co", "temperature", "smoke", "pressure", "manhole-tilt", "water-depth", "residual-current")
SCALE = {
    "gas": 60.0,
    "co": 400.0,
    "temperature": 80.0,
    "smoke": 0.3,
    "pressure": 200_000.0,
    "manhole-tilt": 20.0,
    "water-depth": 0.2,
    "residual-current": 0.6,
}
SENSORS = [sensor(i, KINDS_CYCLE[i % len(KINDS_CYCLE)]) for i in range(24)]
Rounds = list[tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.float64]]]


def _rounds(seed: int, count: int = 60, size: int = 40) -> Rounds:
    """Random walks near each kind's set points, readings every few seconds, some late and repeated."""
    rng = np.random.default_rng(seed)
    level = rng.random(len(SENSORS))
    out: Rounds = []
    clock = np.zeros(len(SENSORS), np.int64)
    for _ in range(count):
        rows = rng.integers(0, len(SENSORS), size).astype(np.intp)
        clock[rows] += rng.integers(1_000, 60_000, size)
        times = T0 + clock[rows] - rng.integers(0, 2, size) * 90_000  # some readings arrive late
        level[rows] = np.clip(level[rows] + rng.normal(0, 0.15, size), 0, 1)
        scale = np.array([SCALE[SENSORS[r].kind.name] for r in rows])
        out.append((rows, times.astype(np.int64), level[rows] * scale))
    return out


def _engine(*, screen: bool = True, sensors: list[SensorInfo] = SENSORS) -> RuleEngine:
    return RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, screen=screen)


def _run(engine: RuleEngine, rounds: Rounds) -> list[RiskEvent]:
    events: list[RiskEvent] = []
    for rows, times, values in rounds:
        events += engine.observe_columns(rows, times, values)
    return events


def test_grouped_rules_report_the_worst_on_one_key() -> None:
    engine = _engine(sensors=[sensor(0, "gas", "gas-1")])
    events = feed(engine, every(10, [5, 12, 27, 55, 45, 30, 15, 5]))
    assert {e.key for e in events} == {"c/gas-1/gas/level"}
    assert [(e.status, e.grade, e.rule) for e in events] == [
        ("firing", Grade.IV, "pre-warning"),
        ("firing", Grade.III, "level-1 alarm"),
        ("firing", Grade.II, "level-2 alarm"),
        ("firing", Grade.III, "level-1 alarm"),  # level 2 cleared under 40: level 1 still holds, re-stated
        ("firing", Grade.IV, "pre-warning"),  # under 20: level 1 cleared
        ("cleared", Grade.IV, "pre-warning"),
    ]
    assert events[0].threshold == 10.0 and events[0].unit == "%LEL" and events[0].source.startswith("household")


@pytest.mark.parametrize("seed", range(12))
def test_screening_decides_exactly_like_judging_every_reading(seed: int) -> None:
    rounds = _rounds(seed)
    screened, everything = _engine(), _engine(screen=False)
    assert _run(screened, rounds) == _run(everything, rounds)
    assert _memory(screened) == _memory(everything)  # not only the same events: the same memory


def _memory(engine: RuleEngine) -> dict[str, object]:
    """The engine's state without its counters (screened rounds count late readings only across rounds)."""
    return {k: v for k, v in engine.to_state().items() if not k.startswith("skipped")}


@pytest.mark.parametrize("seed", range(6))
def test_screening_keeps_the_co_dose_of_low_concentrations(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sensors = [sensor(i, "co") for i in range(4)]
    rounds: Rounds = []
    for k in range(200):
        rows = np.arange(4, dtype=np.intp)
        ceiling = np.array([45.0, 45.0, 70.0, 70.0])  # 30-45 ppm: a slow dose that never alarms, easy to lose
        rounds.append((rows, np.full(4, T0 + k * 60_000, np.int64), rng.uniform(0, 1, 4) * ceiling))
    only = {s.id: default_rules().for_kind("co")[1:2] for s in sensors}  # co-exposure alone: its own quiet band
    assert [rule.id for rule in only["co-0"]] == ["co-exposure"]
    screened, everything = (
        RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, rules=only, screen=screen)
        for screen in (True, False)
    )
    assert _run(screened, rounds) == _run(everything, rounds)
    assert _memory(screened) == _memory(everything)


def test_the_random_streams_do_fire_and_clear() -> None:
    events = _run(_engine(), _rounds(7, count=200))
    assert {e.status for e in events} == {"firing", "cleared"}  # the tests above are not vacuous
    assert len({e.kind for e in events}) >= 5


@pytest.mark.parametrize("cut", [1, 17, 42, 99])
def test_events_for_a_prefix_are_the_first_events_for_the_whole(cut: int) -> None:
    rounds = _rounds(11, count=120)
    whole = _run(_engine(), rounds)
    prefix = _run(_engine(), rounds[:cut])
    assert whole[: len(prefix)] == prefix
    last = max((int(times.max()) for _, times, _ in rounds[:cut]), default=0)
    assert all(e.time_ms <= last for e in prefix)  # a decision uses only data up to its time


@pytest.mark.parametrize("cut", [5, 60, 150])
def test_state_round_trip_mid_stream_continues_without_a_burst(cut: int) -> None:
    rounds = _rounds(23, count=200)
    uninterrupted = _run(_engine(), rounds)
    before = _engine()
    first = _run(before, rounds[:cut])
    state = json.loads(json.dumps(before.to_state()))  # plain JSON, as a hub would keep it on disk
    after = RuleEngine(community="c", ruleset=default_rules(), sensors=SENSORS)
    after.restore(state)
    assert after.observe_columns(*rounds[cut - 1]) == []  # the gateway replays its last batch: nothing again
    rest = _run(after, rounds[cut:])
    assert first + rest == uninterrupted


def test_state_of_another_community_is_refused() -> None:
    state = _engine().to_state()
    with pytest.raises(ValueError, match="community"):
        RuleEngine(community="other", ruleset=default_rules(), sensors=SENSORS).restore(state)


def test_nan_and_late_readings_are_skipped_and_counted() -> None:
    engine = _engine(sensors=[sensor(0, "gas", "gas-1")])
    rows = np.zeros(4, np.intp)
    events = engine.observe_columns(
        rows, np.array([T0, T0 + 1000, T0 + 2000, T0 + 3000], np.int64), np.array([30.0, np.nan, np.inf, 5.0])
    )
    assert [e.status for e in events] == ["firing", "cleared"]  # NaN and inf ignored, not taken as values
    assert engine.skipped_invalid == 2
    late = engine.observe_columns(rows[:2], np.array([T0 + 500, T0 + 3000], np.int64), np.array([60.0, 60.0]))
    assert late == [] and engine.skipped_late == 2  # older than, or as old as, the newest judged reading


def test_a_sensor_reporting_once_a_day_never_holds_a_duration() -> None:
    engine = _engine(sensors=[sensor(0, "lift-entrapment", "lift-1")])
    events = feed(engine, [(i * 86_400, 1.0) for i in range(4)])
    assert [(e.rule, e.status) for e in events] == [("entrapment", "firing")]  # never "over 15 min"


def test_two_smoke_detectors_in_one_space_corroborate_at_grade_ii() -> None:
    sensors = [sensor(0, "smoke", "smoke-a"), sensor(1, "smoke", "smoke-b"), sensor(2, "smoke", "smoke-c")]
    ctx = contexts(
        {
            "smoke-a": ("smoke", "b1-301", frozenset()),
            "smoke-b": ("smoke", "b1-301", frozenset()),
            "smoke-c": ("smoke", "b2-302", frozenset()),
        }
    )
    ctx["smoke-c"] = replace(ctx["smoke-c"], building="b2")
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, contexts=ctx)
    events = feed(engine, [(0, 0.2), (20, 0.2)], row=0) + feed(engine, [(1, 0.2), (21, 0.2)], row=2)
    assert [e.key for e in events] == ["c/smoke-a/smoke/level", "c/smoke-c/smoke/level"]  # another building: no
    assert feed(engine, [(2, 0.2)], row=1) == [], "one reading of smoke is not yet an alarm (20 s verification)"
    events = feed(engine, [(22, 0.2)], row=1)
    corroborated = [e for e in events if e.kind == "corroboration"]
    assert [(e.key, e.grade, e.status) for e in corroborated] == [
        ("c/b1-301/corroboration/smoke-pair", Grade.II, "firing")
    ]
    assert "smoke-a, smoke-b" in corroborated[0].source
    events = feed(engine, [(23, 0.0)], row=0)
    assert [(e.key, e.status) for e in events] == [
        ("c/smoke-a/smoke/level", "cleared"),
        ("c/b1-301/corroboration/smoke-pair", "cleared"),
    ]


def test_smoke_alarms_in_two_spaces_of_one_building_are_smoke_spreading_at_grade_ii() -> None:
    """The e-bike fire's smoke reaches the floor above: each corridor is its own space, so the per-space patterns
    cannot see it; two detectors of one building in alarm are GB 50116's two independent signals."""
    sensors = [sensor(i, "smoke", f"smoke-f{i + 1}") for i in range(3)] + [sensor(3, "smoke", "smoke-x")]
    ctx = contexts({f"smoke-f{i + 1}": ("smoke", f"b1-f{i + 1}", frozenset()) for i in range(3)})
    ctx["smoke-x"] = SensorContext("smoke-x", "smoke", "b2", "b2-f1", frozenset())
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, contexts=ctx)
    feed(engine, [(0, 0.3), (20, 0.3)], row=0)
    events = feed(engine, [(1, 0.3), (21, 0.3)], row=3)
    assert [e.kind for e in events] == ["smoke"], "a detector in another building is not the same smoke"
    events = feed(engine, [(30, 0.4), (50, 0.4)], row=1)
    spread = [e for e in events if e.kind == "corroboration"]
    assert [(e.key, e.grade, e.status) for e in spread] == [("c/b1/corroboration/smoke-spread", Grade.II, "firing")]
    assert (
        "smoke-f1, smoke-f2" in spread[0].source
        and spread[0].location_zh.endswith("等多处")
        and spread[0].place == "b1"
    )
    assert [e.kind for e in feed(engine, [(60, 0.4), (80, 0.4)], row=2)] == ["smoke"], "already holding"
    state = engine.to_state()
    again = RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, contexts=ctx)
    again.restore(state)
    cleared = [(e.key, e.status) for e in feed(again, [(90, 0.0)], row=0) if e.kind == "corroboration"]
    assert cleared == [], "smoke-f2 and smoke-f3 still hold it"
    cleared = [(e.key, e.status) for e in feed(again, [(91, 0.0)], row=1) if e.kind == "corroboration"]
    assert cleared == [("c/b1/corroboration/smoke-spread", "cleared")]


def test_two_smoke_detectors_of_one_space_are_a_pair_not_a_spread() -> None:
    sensors = [sensor(0, "smoke", "smoke-a"), sensor(1, "smoke", "smoke-b")]
    ctx = contexts({"smoke-a": ("smoke", "b1-301", frozenset()), "smoke-b": ("smoke", "b1-301", frozenset())})
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, contexts=ctx)
    events = feed(engine, [(0, 0.2), (20, 0.2)], row=0) + feed(engine, [(1, 0.2), (21, 0.2)], row=1)
    assert [e.key for e in events if e.kind == "corroboration"] == ["c/b1-301/corroboration/smoke-pair"]


def test_smoke_heat_and_co_rising_together_is_fire() -> None:
    sensors = [sensor(0, "smoke", "smoke-1"), sensor(1, "temperature", "heat-1"), sensor(2, "co", "co-1")]
    space = {s.id: (s.kind.name, "b1-kitchen", frozenset[str]()) for s in sensors}
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, contexts=contexts(space))
    feed(engine, [(0, 0.2), (20, 0.2)], row=0)
    events = feed(engine, [(25, 56.0)], row=1)
    assert "c/b1-kitchen/corroboration/smoke-heat" in {e.key for e in events}
    events = feed(engine, [(i * 60, 40.0) for i in range(40)], row=2)  # sustained CO: IV after 30 min
    fire = [e for e in events if e.key == "c/b1-kitchen/corroboration/fire"]
    assert [(e.status, e.grade) for e in fire] == [("firing", Grade.II)]  # never I without a person


def test_gas_and_co_in_one_space_is_a_leak_near_a_flame_at_grade_ii() -> None:
    """``gas-co``: a gas alarm and a CO alarm (each at grade III or worse) in the same space at the same time. A
    pattern has no time window of its own: it holds while both conditions are firing, and clears when one clears."""
    sensors = [sensor(0, "gas", "gas-1"), sensor(1, "co", "co-1"), sensor(2, "gas", "gas-2")]
    ctx = contexts(
        {
            "gas-1": ("gas", "b1-kitchen", frozenset()),
            "co-1": ("co", "b1-kitchen", frozenset()),
            "gas-2": ("gas", "b1-302", frozenset()),  # same building, another space
        }
    )
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, contexts=ctx)
    events = feed(engine, [(0, 30.0)], row=2)  # 30 %LEL: level-1 alarm, grade III, and no CO anywhere yet
    assert [(e.key, e.grade) for e in events] == [("c/gas-2/gas/level", Grade.III)]
    events = feed(engine, [(i * 60, 40.0) for i in range(1, 41)], row=1)  # 40 ppm held: grade IV after 30 min
    assert [(e.key, e.grade) for e in events] == [("c/co-1/co/level", Grade.IV)], "gas in another space is not it"
    events = feed(engine, [(2_500, 30.0)], row=0)
    assert [e.key for e in events] == ["c/gas-1/gas/level"], "CO at grade IV is below the pattern's min_grade III"
    events = feed(engine, [(2_510, 350.0)], row=1)  # danger level: grade II
    corroborated = [e for e in events if e.kind == "corroboration"]
    assert [(e.key, e.grade, e.status) for e in corroborated] == [
        ("c/b1-kitchen/corroboration/gas-co", Grade.II, "firing")
    ]
    assert corroborated[0].source.endswith("sensors gas-1, co-1; confidence 0.80")
    events = feed(engine, [(2_520, 0.0)], row=1)
    assert [(e.key, e.status) for e in events] == [
        ("c/co-1/co/level", "cleared"),
        ("c/b1-kitchen/corroboration/gas-co", "cleared"),
    ]


@pytest.mark.parametrize(
    ("tags", "value", "grade"),
    [
        (frozenset(), 27.0, Grade.III),
        (frozenset({"elder-living-alone"}), 27.0, Grade.II),
        (frozenset({"basement"}), 12.0, Grade.III),
        (frozenset({"school"}), 55.0, Grade.II),  # already II: capped, never I
        (frozenset({"shop"}), 27.0, Grade.III),  # not a grade-raising tag
    ],
)
def test_context_raises_the_grade_one_step_capped_at_ii(tags: frozenset[str], value: float, grade: Grade) -> None:
    ctx = contexts({"gas-1": ("gas", "", tags)})
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=[sensor(0, "gas", "gas-1")], contexts=ctx)
    (event,) = feed(engine, [(0, value)])
    assert event.grade is grade


def test_a_puff_of_cooking_fumes_in_one_reading_is_not_a_smoke_alarm_but_smoke_that_stays_is() -> None:
    """Quiet-month nuisance: a detector read every minute sees fumes in one reading (bench detection: these were
    71.7 false grade III events per 1,000 sensor-days before the 20 s verification)."""
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=[sensor(0, "smoke", "smoke-1")])
    assert feed(engine, [(0, 0.01), (60, 0.21), (120, 0.01), (180, 0.02)]) == []
    [alarm] = feed(engine, [(240, 0.2), (300, 0.22)])
    assert (alarm.status, alarm.grade, alarm.time_ms) == ("firing", Grade.III, T0 + 300_000)


def test_a_tilted_cover_that_is_also_open_is_a_displaced_cover_at_grade_ii() -> None:
    sensors = [sensor(0, "manhole-tilt", "tilt-1"), sensor(1, "manhole-open", "open-1")]
    space = {s.id: (s.kind.name, "road-r1", frozenset[str]()) for s in sensors}
    engine = RuleEngine(community="c", ruleset=default_rules(), sensors=sensors, contexts=contexts(space))
    feed(engine, [(0, 1.0)], row=1)
    events = feed(engine, every(1.0, [28.0] * 40), row=0)  # > 15° held 30 s: grade III on its own
    displaced = [e for e in events if e.key == "c/road-r1/corroboration/manhole-displaced"]
    assert [(e.status, e.grade) for e in displaced] == [("firing", Grade.II)]
