"""Rules as data: the shipped defaults load and cite their sources; every validation error names the rule and
the field; per-community, building and sensor overrides."""

from pathlib import Path
from typing import Any

import pytest

from hub.detection.rules import RuleError, SensorContext, default_rules, load_rules, resolve_rules
from hub.detection.rules.model import CUMULATIVE_KINDS, parse_rules, validate_rule
from protocol.kinds import KINDS

GOOD: dict[str, Any] = {
    "id": "gas-level-1",
    "kind": "gas",
    "name": "level-1 alarm",
    "name_zh": "一级报警",
    "grade": "III",
    "source": "GB/T 50493-2019 §5.5.2: level 1 alarm <= 25 %LEL",
    "tag": "S",
    "level": {"above": 25.0},
    "hysteresis": {"clear": 20.0},
}


def test_defaults_cover_every_kind_with_set_points_and_cite_a_source() -> None:
    rules = default_rules()
    for kind in KINDS.values():
        if kind.set_points or kind.name in CUMULATIVE_KINDS:
            assert rules.for_kind(kind.name), f"no default rule for {kind.name}"
    for rule in rules.rules:
        assert ":" in rule.source and rule.tag in "SVUD"
        assert rule.grade != "I"
    assert rules.timezone == "Asia/Shanghai"


def test_defaults_are_shipped_as_package_data() -> None:
    import hub.detection.rules as package

    assert (Path(package.__file__).parent / "defaults.yaml").is_file()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"hysteresis": {"clear": 30.0}}, 'rule "gas-level-1": hysteresis.clear: must be below the level'),
        (
            {"kind": "pressure", "level": {"below": 100_000.0}, "hysteresis": {"clear": 90_000.0}},
            'rule "gas-level-1": hysteresis.clear: must be over the level',
        ),
        ({"levle": {"above": 1}}, 'rule "gas-level-1": levle: unknown key'),
        ({"kind": "radon"}, 'rule "gas-level-1": kind: unknown sensor kind'),
        ({"grade": "I"}, 'rule "gas-level-1": grade:'),
        ({"tag": "X"}, 'rule "gas-level-1": tag:'),
        ({"source": "somewhere"}, 'rule "gas-level-1": source: cite as'),
        ({"level": {"above": 25.0, "below": 5.0}}, 'rule "gas-level-1": level: give exactly one of above, below'),
        ({"rate": {"rise_per_min": 4, "window_s": 60}}, 'rule "gas-level-1": level: give exactly one trigger'),
        ({"level": {"above": 250.0}}, 'rule "gas-level-1": level.above: 250.0 is outside what a gas sensor'),
        ({"duration_s": -1}, 'rule "gas-level-1": duration_s:'),
        ({"duration_s": 60, "count": {"crossings": 3, "within_s": 600}}, 'rule "gas-level-1": count: cannot'),
        ({"count": {"crossings": 1, "within_s": 600}}, 'rule "gas-level-1": count.crossings:'),
        (
            {"schedule": [{"start": "22:00", "end": "06:00", "value": 8.0, "clear": 9.0}]},
            'rule "gas-level-1": schedule[0].clear: must be below',
        ),
        ({"schedule": [{"start": "25:00", "end": "06:00", "value": 8.0}]}, 'rule "gas-level-1": schedule[0].start'),
        ({"delay": {"on_s": -5}}, 'rule "gas-level-1": delay.on_s:'),
        ({"id": "Gas Level"}, 'rule "Gas Level": id:'),
    ],
)
def test_each_validation_error_names_the_rule_and_the_field(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(RuleError) as caught:
        validate_rule({**GOOD, **change})
    assert expected in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"kind": "temperature", "rate": {"rise_per_min": 4, "window_s": 60, "clear_per_min": 5}},
            "rate.clear_per_min: must be below rise_per_min",
        ),
        (
            {"kind": "temperature", "rate": {"rise_per_min": 4, "window_s": 60}, "hysteresis": {"clear": 1.0}},
            "hysteresis: only for a level rule",
        ),
        (
            {
                "kind": "co",
                "exposure": {"start_ppm": 30, "points": [{"ppm": 100, "minutes": 25}, {"ppm": 50, "minutes": 75}]},
            },
            "exposure.points[1].ppm: must rise",
        ),
    ],
)
def test_other_triggers_are_checked_too(rule: dict[str, Any], expected: str) -> None:
    raw = {key: value for key, value in GOOD.items() if key not in ("level", "hysteresis")}
    with pytest.raises(RuleError, match=r"rule \"gas-level-1\": ") as caught:
        validate_rule({**raw, **rule})
    assert expected in str(caught.value)


def test_a_file_lists_every_problem_with_its_file(tmp_path: Path) -> None:
    file = tmp_path / "rules.yaml"
    file.write_text(
        "rules:\n"
        "  - {id: a, kind: gas, name: a, name_zh: 甲, grade: III, source: 'x: y', tag: D, level: {above: 5}}\n"
        "  - {id: a, kind: gas, name: a, name_zh: 甲, grade: III, source: 'x: y', tag: D, level: {above: 6}}\n"
        "  - {id: b, kind: gas, name: b, name_zh: 乙, grade: V, source: 'x: y', tag: D, level: {above: 6}}\n"
        "timezone: Mars/Olympus\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleError) as caught:
        load_rules(file)
    text = str(caught.value)
    assert f'{file}: rule "a": id: duplicate rule id' in text
    assert f'{file}: rule "b": grade:' in text
    assert 'rule "(file)": timezone: unknown time zone' in text


def test_not_yaml_and_not_a_mapping_are_errors_not_crashes(tmp_path: Path) -> None:
    file = tmp_path / "rules.yaml"
    file.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(RuleError, match="not valid YAML"):
        load_rules(file)
    with pytest.raises(RuleError, match="expected a mapping"):
        parse_rules(["a"])


SENSORS = [
    SensorContext("gas-1", "gas", building="b1"),
    SensorContext("gas-2", "gas", building="b2"),
    SensorContext("smoke-1", "smoke", building="b1"),
]


def _ids(rules: tuple[Any, ...]) -> dict[str, Any]:
    return {rule.id: rule for rule in rules}


def test_overrides_apply_per_community_building_and_sensor_in_that_order() -> None:
    section = {
        "community": [{"id": "gas-level-1", "level": {"above": 20.0}, "hysteresis": {"clear": 16.0}}],
        "buildings": {
            "b1": [{"id": "gas-level-1", "level": {"above": 22.0}}, {"id": "smoke-recurring", "enabled": False}]
        },
        "sensors": {
            "gas-1": [
                {"id": "gas-pre-warning", "schedule": []},
                {
                    "id": "gas-kitchen-held",
                    "name": "kitchen level held",
                    "name_zh": "厨房持续",
                    "grade": "III",
                    "source": "Anju [D]: test",
                    "tag": "D",
                    "level": {"above": 15.0},
                    "duration_s": 120,
                },
            ]
        },
    }
    resolved = resolve_rules(section, SENSORS)
    gas1, gas2, smoke1 = (_ids(resolved.per_sensor[s.sensor]) for s in SENSORS)
    assert gas1["gas-level-1"].level.above == 22.0 and gas1["gas-level-1"].clear_level == 16.0
    assert gas2["gas-level-1"].level.above == 20.0
    assert gas1["gas-pre-warning"].schedule == () and gas2["gas-pre-warning"].schedule
    assert gas1["gas-kitchen-held"].kind == "gas" and "gas-kitchen-held" not in gas2
    assert "smoke-recurring" not in smoke1 and "smoke-alarm" in smoke1
    assert "gas-level-1" not in smoke1  # a gas override does not reach smoke sensors


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            {"sensors": {"gas-1": [{"id": "gas-level-1", "hysteresis": {"clear": 30.0}}]}},
            'rules.sensors.gas-1[0]: rule "gas-level-1": hysteresis.clear: must be below the level',
        ),
        ({"sensors": {"gas-9": []}}, "rules.sensors.gas-9: no sensor with this id"),
        ({"buildings": {"b9": []}}, "rules.buildings.b9: no sensor is in this building"),
        ({"community": [{"id": "new-rule", "grade": "III"}]}, 'rules.community[0]: rule "new-rule": kind: a new rule'),
        ({"community": [{"grade": "III"}]}, 'rules.community[0]: rule "#1": id: every override needs the id'),
        ({"colour": "red"}, "rules.colour: unknown key"),
        ({"timezone": "Nowhere/Town"}, "timezone: unknown time zone"),
        (
            {"sensors": {"gas-1": [{"id": "gas-extra", "name": "x", "name_zh": "x", "grade": "III", "tag": "D"}]}},
            'rules.sensors.gas-1[0]: rule "gas-extra": source:',
        ),
    ],
)
def test_override_errors_name_the_place_the_rule_and_the_field(section: dict[str, Any], expected: str) -> None:
    with pytest.raises(RuleError) as caught:
        resolve_rules(section, SENSORS)
    assert expected in str(caught.value), str(caught.value)


def test_every_set_point_of_the_kinds_is_a_default_rule_with_its_value_and_grade() -> None:
    """protocol/kinds.py (the edge's local alarms, the messages' citations) and defaults.yaml (the hub's rules) hold
    the same standard set points; this keeps the two in step. A CO level may be judged as a dose (EN 50291). A
    cumulative register (water meter) has no set point in kinds.py: its limits are increases over a window, which
    only the hub's ``change`` rules judge, so its default rules are all change rules."""
    rules = default_rules()
    for kind in KINDS.values():
        kind_rules = rules.for_kind(kind.name)
        if kind.name in CUMULATIVE_KINDS:
            assert not kind.set_points and all(r.change is not None for r in kind_rules), kind.name
        levels = {
            (r.level.above if r.level.above is not None else r.level.below, r.grade)
            for r in kind_rules
            if r.level is not None
        }
        doses = {r.grade for r in kind_rules if r.exposure is not None}
        for point in kind.set_points:
            grade = ("I", "II", "III", "IV")[point.grade - 1]
            assert (point.value, grade) in levels or grade in doses, (kind.name, point.name)
