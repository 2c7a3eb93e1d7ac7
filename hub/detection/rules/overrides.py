"""Per-community, per-building and per-sensor rule overrides: the ``rules:`` section of a deployment file.

    rules:
      timezone: Asia/Shanghai            # optional, the community's clock for schedules
      raise_grade_tags: [elder-living-alone, school, basement]   # optional, replaces the default list
      community:                         # every sensor of the community
        - {id: gas-level-1, level: {above: 20.0}, hysteresis: {clear: 16.0}}
      buildings:                         # sensors whose context says building b1
        b1:
          - {id: smoke-recurring, enabled: false}
      sensors:                           # one sensor
        gas-b1-301:
          - {id: gas-pre-warning, schedule: []}
          - {id: gas-kitchen-held, name: …, name_zh: …, grade: III, source: "…: …", tag: D,
             level: {above: 15.0}, duration_s: 120}

An entry whose ``id`` is a rule already in force for the sensor changes only the keys it gives (mappings are
merged key by key, lists and values replaced); ``enabled: false`` switches the rule off. Any other id adds a
new rule and must be complete (a sensor-level entry may leave out ``kind``: the sensor's). A community or
building entry applies to the sensors of the rule's kind only. Later levels win: defaults < community <
building < sensor. Every merged rule is validated again, and an error names the override's place, the rule
and the field: ``rules.sensors.gas-b1-301[0]: rule "gas-pre-warning": hysteresis.clear: must be below …``.
A rule with ``only_tags`` is in force only for sensors whose context carries one of them (an override may
change ``only_tags`` too, e.g. ``[]`` for every meter of a community of elders' flats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.detection.rules.context import SensorContext
from hub.detection.rules.model import Rule, RuleError, RuleIssue, RuleSet, default_rules, parse_rules, validate_rule

__all__ = ["ResolvedRules", "resolve_rules"]

_SECTION_KEYS = ("timezone", "raise_grade_tags", "community", "buildings", "sensors")


@dataclass(frozen=True, slots=True)
class ResolvedRules:
    """The rule set (time zone, grade-raising tags, corroboration) and the rules in force for each sensor id."""

    ruleset: RuleSet
    per_sensor: dict[str, tuple[Rule, ...]]


def _merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True, slots=True)
class _Entry:
    where: str
    raw: Mapping[str, Any]


def _entries(value: object, where: str, issues: list[RuleIssue]) -> list[_Entry]:
    if value is None:
        return []
    if not isinstance(value, list):
        issues.append(RuleIssue("(overrides)", where, "must be a list of rule overrides"))
        return []
    entries = []
    for index, raw in enumerate(value):
        at = f"{where}[{index}]"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            issues.append(RuleIssue(f"#{index + 1}", "id", "every override needs the id of the rule it changes", at))
            continue
        entries.append(_Entry(at, raw))
    return entries


def _apply(
    rules: dict[str, dict[str, Any]], entries: Sequence[_Entry], kind: str, sensor_level: bool, issues: list[RuleIssue]
) -> None:
    """Merge ``entries`` into ``rules`` (id → raw rule of ``kind``), in place; problems go to ``issues``."""
    for entry in entries:
        rule_id = entry.raw["id"]
        if rule_id in rules:
            if entry.raw.get("kind", kind) != kind:
                issues.append(RuleIssue(rule_id, "kind", f"cannot change the kind of a {kind} rule", entry.where))
                continue
            rules[rule_id] = _merge(rules[rule_id], entry.raw)
        elif ("kind" in entry.raw or sensor_level) and entry.raw.get("kind", kind) == kind:
            rules[rule_id] = {"kind": kind, **entry.raw}


def _validated(
    raw: Mapping[str, dict[str, Any]], where: Mapping[str, str], issues: list[RuleIssue]
) -> tuple[Rule, ...]:
    rules = []
    for rule_id, data in raw.items():
        try:
            rule = validate_rule(data, where=where.get(rule_id, "defaults"))
        except RuleError as exc:
            issues.extend(exc.issues)
            continue
        if rule.enabled:
            rules.append(rule)
    return tuple(rules)


def resolve_rules(
    section: Mapping[str, Any] | None,
    sensors: Sequence[SensorContext],
    *,
    base: RuleSet | None = None,
    where: str = "rules",
) -> ResolvedRules:
    """The rules in force for each of ``sensors`` given a deployment's ``rules:`` section (None: defaults only).

    ``base`` is the rule set overrides start from (default: the shipped ``defaults.yaml``). Raises RuleError
    listing every problem, each with the override's place, the rule and the field. Merged rule sets are computed
    once per (kind, building) and once more only for sensors with their own overrides: the work grows with the
    overrides, not with the number of sensors.
    """
    ruleset = base if base is not None else default_rules()
    section = section or {}
    issues: list[RuleIssue] = []
    for key in section:
        if key not in _SECTION_KEYS:
            issues.append(RuleIssue("(overrides)", f"{where}.{key}", f"unknown key; known: {', '.join(_SECTION_KEYS)}"))
    head = {key: section[key] for key in ("timezone", "raise_grade_tags") if key in section}
    if head:
        try:
            ruleset = parse_rules(
                {**ruleset.model_dump(exclude={"rules", "corroboration"}), **head}, where=where
            ).model_copy(update={"rules": ruleset.rules, "corroboration": ruleset.corroboration})
        except RuleError as exc:
            issues.extend(exc.issues)
    community = _entries(section.get("community"), f"{where}.community", issues)
    buildings_raw = section.get("buildings") or {}
    sensors_raw = section.get("sensors") or {}
    buildings: dict[str, list[_Entry]] = {}
    per_sensor_entries: dict[str, list[_Entry]] = {}
    for label, target, store in (("buildings", buildings_raw, buildings), ("sensors", sensors_raw, per_sensor_entries)):
        if not isinstance(target, Mapping):
            issues.append(
                RuleIssue("(overrides)", f"{where}.{label}", "must be a mapping of id to a list of overrides")
            )
            continue
        for name, value in target.items():
            store[str(name)] = _entries(value, f"{where}.{label}.{name}", issues)
    known_buildings = {sensor.building for sensor in sensors}
    known_sensors = {sensor.sensor for sensor in sensors}
    for building in buildings:
        if building not in known_buildings:
            issues.append(RuleIssue("(overrides)", f"{where}.buildings.{building}", "no sensor is in this building"))
    for sensor_id in per_sensor_entries:
        if sensor_id not in known_sensors:
            issues.append(RuleIssue("(overrides)", f"{where}.sensors.{sensor_id}", "no sensor with this id"))
    defaults = {rule.id: rule.model_dump(exclude_defaults=True) for rule in ruleset.rules}
    cache: dict[tuple[str, str], tuple[dict[str, dict[str, Any]], dict[str, str]]] = {}
    validated: dict[tuple[str, str], tuple[Rule, ...]] = {}
    per_sensor: dict[str, tuple[Rule, ...]] = {}
    for sensor in sensors:
        group = (sensor.kind, sensor.building)
        if group not in cache:
            raw = {rule_id: data for rule_id, data in defaults.items() if data["kind"] == sensor.kind}
            _apply(raw, community, sensor.kind, False, issues)
            _apply(raw, buildings.get(sensor.building, []), sensor.kind, False, issues)
            origin = _origins([*community, *buildings.get(sensor.building, [])])
            cache[group] = (raw, origin)
            validated[group] = _validated(raw, origin, issues)
        own = per_sensor_entries.get(sensor.sensor)
        if not own:
            rules = validated[group]
        else:
            raw = {rule_id: dict(data) for rule_id, data in cache[group][0].items()}
            _apply(raw, own, sensor.kind, True, issues)
            rules = _validated(raw, {**cache[group][1], **_origins(own)}, issues)
        per_sensor[sensor.sensor] = tuple(rule for rule in rules if rule.applies_to(sensor.tags))
    for entry in community + [e for entries in buildings.values() for e in entries]:
        rule_id = entry.raw["id"]
        if ruleset.rule(rule_id) is None and "kind" not in entry.raw:
            issues.append(
                RuleIssue(rule_id, "kind", "a new rule needs its kind (no default rule has this id)", entry.where)
            )
    if issues:
        raise RuleError(_unique(issues))
    return ResolvedRules(ruleset, per_sensor)


def _origins(entries: Sequence[_Entry]) -> dict[str, str]:
    return {entry.raw["id"]: entry.where for entry in entries}


def _unique(issues: Sequence[RuleIssue]) -> list[RuleIssue]:
    seen: set[RuleIssue] = set()
    unique = []
    for issue in issues:
        if issue not in seen:
            seen.add(issue)
            unique.append(issue)
    return unique
