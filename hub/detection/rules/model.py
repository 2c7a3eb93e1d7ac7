"""Rules as data: the YAML schema of one detection rule, validated at load with errors naming rule and field.

A rule watches one sensor kind and has exactly one *trigger*:

* ``level`` — the value is past a set point (``above`` or ``below``), with a separate ``hysteresis.clear``
  level so a value hovering at the set point does not flap; optionally held for ``duration_s`` ("above X for
  T s"), or crossed ``count.crossings`` times ``count.within_s`` (a loose manhole cover jolted by every bus),
  and with ``schedule`` windows that set other limits at other local times (lower limits at night).
* ``rate`` — the value rises at least ``rise_per_min`` (unit per minute) over ``window_s`` (heat detectors'
  rate-of-rise, EN 54-5 classes A1R…; SENSORS.md "heat").
* ``exposure`` — a time-weighted dose on a concentration-time curve (CO, EN 50291; see ``exposure.py``).
* ``change`` — the increase of a cumulative register over the trailing ``within_s`` seconds, value(now) −
  value(now − within_s), less than ``below`` (an elder's water meter that has not moved for 12 h) or more than
  ``above`` (a leak), strictly, as the sources phrase it, with a ``hysteresis.clear`` reached inclusively; only
  for kinds in ``CUMULATIVE_KINDS`` (condition.py documents the window: coverage, time resolution, restarts).

A rule may apply to tagged sensors only (``only_tags``: the sensor carries at least one of the tags, from its
context: deployment ``tags``). Such a tag is the rule's premise, not an aggravation, so it does not raise the
rule's grade even when it is in ``raise_grade_tags`` (an elder's water meter that stops is grade III because the
meter is an elder's, not III raised to II for it); other grade-raising tags of the sensor still apply.

Every rule may delay its alarm (``delay.on_s``: the trigger must hold that long) and its clear
(``delay.off_s``: the trigger must stay off that long), and cites where its numbers come from (``source`` as
``"<standard>: <detail>"`` and ``tag``: S standard, V vendor/practice, U unconfirmed, D Anju's choice —
../shared/SENSORS.md). Sensor evidence alone never suggests grade I, so ``grade`` is IV, III or II.

Validation is strict (unknown keys are errors) and happens at load, never on the ingest path: an operator who
mistypes a clear level learns it from ``anju-hub check-config``, not from a silent detector at 3 a.m.
"""

from __future__ import annotations

import math
import os
import warnings
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import ReusedAnchorWarning, YAMLError

from protocol.kinds import KINDS

__all__ = [
    "CUMULATIVE_KINDS",
    "Corroboration",
    "Count",
    "Delay",
    "Exposure",
    "ExposurePoint",
    "Hysteresis",
    "Level",
    "Rate",
    "Rule",
    "RuleError",
    "RuleIssue",
    "RuleSet",
    "ScheduleWindow",
    "WindowChange",
    "default_rules",
    "load_rules",
    "parse_rules",
    "validate_rule",
]

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
GradeName = Literal["IV", "III", "II"]
GRADE_NUMBERS: dict[str, int] = {"IV": 4, "III": 3, "II": 2}
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DEFAULT_TIMEZONE = "Asia/Shanghai"
CUMULATIVE_KINDS = frozenset({"water-meter"})
"""Kinds whose value is a register counting up (a water meter's m³): the only ones a ``change`` rule may watch,
because a decrease of such a value means a new or reset register, not less of the quantity."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Level(_Strict):
    """The set point, in the kind's unit: exactly one of ``above`` (dangerous at or above) or ``below``."""

    above: float | None = None
    below: float | None = None

    @property
    def is_above(self) -> bool:
        return self.above is not None

    @property
    def value(self) -> float:
        value = self.above if self.above is not None else self.below
        if value is None:
            raise ValueError("a level needs above or below (validate_rule checks this at load)")
        return value


class WindowChange(Level):
    """The increase of a cumulative register over the trailing ``within_s`` seconds, in the kind's unit (m³ for a
    water meter): exactly one of ``above`` (more than: a leak) or ``below`` (less than: no use)."""

    within_s: float = Field(gt=0, le=7 * 86_400)


class Hysteresis(_Strict):
    """The level the value must come back past before the condition clears (below ``above``, over ``below``)."""

    clear: float


class Count(_Strict):
    """Fire when the level was crossed ``crossings`` times within ``within_s`` seconds (each crossing re-arms
    only after the value came back past the clear level); clear once no crossing is left in the window."""

    crossings: int = Field(ge=2, le=1000)
    within_s: float = Field(gt=0, le=7 * 86_400)


class ScheduleWindow(_Strict):
    """Other limits from ``start`` to ``end`` local time (``end`` before ``start`` wraps midnight) on ``days``
    (the day the window starts). The first matching window wins; outside all windows the rule's own level."""

    start: ClockTime
    end: ClockTime
    days: tuple[Day, ...] = DAYS
    value: float
    clear: float | None = None


class Rate(_Strict):
    """Rate of rise: (newest value − oldest value in the last ``window_s``) per minute ≥ ``rise_per_min``.

    Judged only once the window spans at least half of ``window_s`` (two close points of a noisy sensor are
    not a trend), and only while the value is at least ``min_value`` (when set): below it the history is
    dropped, which also lets the hub skip every normal reading of a normal room.
    Clears below ``clear_per_min`` (default half of ``rise_per_min``).
    """

    rise_per_min: float = Field(gt=0)
    window_s: float = Field(gt=0, le=3600)
    min_value: float | None = None
    clear_per_min: float | None = None


class ExposurePoint(_Strict):
    """One point of the concentration-time curve: held at ``ppm``, the alarm comes after ``minutes``."""

    ppm: float = Field(gt=0)
    minutes: float = Field(gt=0)


class Exposure(_Strict):
    """Time-weighted dose (exposure.py documents the model): alarm at dose 1, clear below ``clear_dose``."""

    start_ppm: float = Field(ge=0)
    points: tuple[ExposurePoint, ...] = Field(min_length=1)
    clear_dose: float = Field(default=0.5, gt=0, lt=1)
    half_life_min: float = Field(default=30.0, gt=0)
    cap: float = Field(default=2.0, ge=1, le=100)


class Delay(_Strict):
    """Seconds the trigger must hold before the alarm fires (``on_s``) and stay off before it clears (``off_s``)."""

    on_s: float = Field(default=0.0, ge=0, le=86_400)
    off_s: float = Field(default=0.0, ge=0, le=86_400)


class Rule(_Strict):
    """One detection rule (see the module docstring). Values are in the unit of ``kind`` (protocol/kinds.py)."""

    id: Id
    kind: str
    name: str = Field(min_length=1)
    """English name, shown in notifications (the set point's name in protocol/kinds.py where there is one)."""
    name_zh: str = Field(min_length=1)
    grade: GradeName
    source: str = Field(min_length=3)
    tag: Literal["S", "V", "U", "D"]
    group: Id | None = None
    """Rules of one sensor with the same group share one condition key; the worst firing one is reported."""
    enabled: bool = True
    level: Level | None = None
    hysteresis: Hysteresis | None = None
    duration_s: float = Field(default=0.0, ge=0, le=86_400)
    count: Count | None = None
    schedule: tuple[ScheduleWindow, ...] = ()
    rate: Rate | None = None
    exposure: Exposure | None = None
    change: WindowChange | None = None
    only_tags: tuple[Id, ...] = ()
    """Applies only to sensors carrying one of these tags (empty: every sensor of the kind); these tags do not
    raise the rule's grade (module docstring)."""
    delay: Delay = Delay()
    max_gap_s: float = Field(default=900.0, gt=0, le=7 * 86_400)
    """A longer silence between two readings restarts duration, delay, rate and dose timing: what happened in
    between is unknown, so it is not counted as held (a sensor reporting once a day never "held" 24 h)."""

    @property
    def grade_number(self) -> int:
        """4 (IV blue) … 2 (II orange)."""
        return GRADE_NUMBERS[self.grade]

    @property
    def condition(self) -> str:
        """The group the rule reports under (its own id when it has none)."""
        return self.group or self.id

    @property
    def clear_level(self) -> float:
        """The hysteresis clear level of a level or change rule (the limit itself when no hysteresis is given)."""
        limit = self.level if self.level is not None else self.change
        if limit is None:
            raise ValueError(f"rule {self.id} has no level and no change")
        return self.hysteresis.clear if self.hysteresis is not None else limit.value

    @property
    def below(self) -> bool:
        """True when the rule's condition is the value under its limit (low pressure, no water use)."""
        limit = self.level if self.level is not None else self.change
        return limit is not None and not limit.is_above

    def applies_to(self, tags: frozenset[str]) -> bool:
        """True when the rule is for a sensor with ``tags``: no ``only_tags``, or one of them among ``tags``."""
        return not self.only_tags or not tags.isdisjoint(self.only_tags)


class Corroboration(_Strict):
    """Evidence from several sensors in one place: fires while, in a space (``scope: space``) or a building
    (``scope: building``, the sensors in at least two different spaces), at least ``kinds[k]`` distinct sensors of
    each kind ``k`` have a firing condition of grade ``min_grade`` or worse."""

    id: Id
    name: str = Field(min_length=1)
    name_zh: str = Field(min_length=1)
    grade: GradeName = "II"
    kinds: dict[str, Annotated[int, Field(ge=1, le=10)]] = Field(min_length=1)
    min_grade: GradeName = "III"
    confidence: float = Field(ge=0, le=1)
    source: str = Field(min_length=3)
    tag: Literal["S", "V", "U", "D"]
    scope: Literal["space", "building"] = "space"


class RuleSet(_Strict):
    """A rules file: the rules, the corroboration patterns, the context tags that raise a grade, the time zone."""

    version: Literal[1] = 1
    timezone: str = DEFAULT_TIMEZONE
    raise_grade_tags: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    corroboration: tuple[Corroboration, ...] = ()

    def for_kind(self, kind: str) -> tuple[Rule, ...]:
        """The enabled rules of ``kind``, in file order."""
        return tuple(rule for rule in self.rules if rule.kind == kind and rule.enabled)

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """One thing wrong with one rule: ``rule "gas-level-1": hysteresis.clear: must be below …``."""

    rule: str
    field: str
    message: str
    where: str = ""

    def render(self) -> str:
        text = f'rule "{self.rule}": {self.field or "(rule)"}: {self.message}'
        return f"{self.where}: {text}" if self.where else text


class RuleError(ValueError):
    """Rules failed validation; ``issues`` lists every problem, each naming the rule and the field."""

    def __init__(self, issues: Sequence[RuleIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(issue.render() for issue in self.issues))


def _field(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _rule_name(raw: object, index: int) -> str:
    if isinstance(raw, Mapping) and isinstance(raw.get("id"), str):
        return str(raw["id"])
    return f"#{index + 1}"


def _in_range(kind: str, value: float) -> str | None:
    spec = KINDS[kind]
    if not math.isfinite(value) or not spec.minimum <= value <= spec.maximum:
        return f"{value!r} is outside what a {kind} sensor reports ({spec.minimum:g}..{spec.maximum:g} {spec.unit})"
    return None


def _level_problems(rule: Rule) -> Iterable[tuple[str, str]]:
    level = rule.level
    if level is None:
        return
    if (level.above is None) == (level.below is None):
        yield "level", "give exactly one of above, below"
        return
    side = "above" if level.is_above else "below"
    if (problem := _in_range(rule.kind, level.value)) is not None:
        yield f"level.{side}", problem
    limits = [("hysteresis.clear", level.value, rule.hysteresis.clear if rule.hysteresis else None)]
    for index, window in enumerate(rule.schedule):
        if (problem := _in_range(rule.kind, window.value)) is not None:
            yield f"schedule[{index}].value", problem
        limits.append((f"schedule[{index}].clear", window.value, window.clear))
        if window.start == window.end:
            yield f"schedule[{index}].end", "must differ from start"
    for name, value, clear in limits:
        if clear is None:
            continue
        if level.is_above and not clear < value:
            yield name, f"must be below the level ({value:g}) for an 'above' rule"
        elif not level.is_above and not clear > value:
            yield name, f"must be over the level ({value:g}) for a 'below' rule"
    if rule.count is not None and rule.duration_s > 0:
        yield "count", "cannot be combined with duration_s (a count of short crossings, or one long one)"


def _change_problems(rule: Rule) -> Iterable[tuple[str, str]]:
    change = rule.change
    if change is None:
        return
    if rule.kind not in CUMULATIVE_KINDS:
        kinds = ", ".join(sorted(CUMULATIVE_KINDS))
        yield "change", f"only for a cumulative kind ({kinds}), not {rule.kind}: a decrease restarts the window"
        return
    if (change.above is None) == (change.below is None):
        yield "change", "give exactly one of above, below"
        return
    side = "above" if change.is_above else "below"
    spec = KINDS[rule.kind]
    span = spec.maximum - spec.minimum
    if not math.isfinite(change.value) or not 0 <= change.value <= span:
        yield f"change.{side}", f"{change.value!r} is not an increase a {rule.kind} can show (0..{span:g} {spec.unit})"
    elif not change.is_above and change.value == 0:
        yield "change.below", "must be over 0 (an increase is never less than 0: it would never fire)"
    if rule.hysteresis is None:
        return
    clear = rule.hysteresis.clear
    if change.is_above and not 0 <= clear < change.value:
        yield "hysteresis.clear", f"must be below the limit ({change.value:g}) and not below 0 for an 'above' rule"
    elif not change.is_above and not clear > change.value:
        yield "hysteresis.clear", f"must be over the limit ({change.value:g}) for a 'below' rule"


def _exposure_problems(exposure: Exposure) -> Iterable[tuple[str, str]]:
    previous_ppm, previous_min = exposure.start_ppm, math.inf
    for index, point in enumerate(exposure.points):
        if point.ppm <= previous_ppm:
            yield f"exposure.points[{index}].ppm", f"must rise above the previous concentration ({previous_ppm:g})"
        if point.minutes >= previous_min:
            yield f"exposure.points[{index}].minutes", f"must fall below the previous time ({previous_min:g} min)"
        previous_ppm, previous_min = point.ppm, point.minutes


def _rule_problems(rule: Rule) -> Iterable[tuple[str, str]]:
    """Cross-field checks a per-field schema cannot express."""
    if rule.kind not in KINDS:
        yield "kind", f"unknown sensor kind {rule.kind!r}; known: {', '.join(sorted(KINDS))}"
        return
    if ":" not in rule.source:
        yield "source", "cite as '<standard or source>: <detail>' (the part before the colon is shown to people)"
    triggers = [name for name in ("level", "rate", "exposure", "change") if getattr(rule, name) is not None]
    if len(triggers) != 1:
        names = ", ".join(triggers) or "none"
        yield "level", f"give exactly one trigger of level, rate, exposure, change (got {names})"
        return
    if rule.level is not None:
        yield from _level_problems(rule)
    else:
        for name in ("hysteresis", "count", "schedule"):
            if name == "hysteresis" and rule.change is not None:
                continue
            if getattr(rule, name):
                also = " or a change rule" if name == "hysteresis" else ""
                yield name, f"only for a level rule{also}, not a {triggers[0]} rule"
        if rule.duration_s:
            yield "duration_s", f"only for a level rule (use delay.on_s for a {triggers[0]} rule)"
    if rule.rate is not None:
        rate = rule.rate
        if rate.clear_per_min is not None and not rate.clear_per_min < rate.rise_per_min:
            yield "rate.clear_per_min", f"must be below rise_per_min ({rate.rise_per_min:g})"
        if rate.min_value is not None and (problem := _in_range(rule.kind, rate.min_value)) is not None:
            yield "rate.min_value", problem
    if rule.exposure is not None:
        yield from _exposure_problems(rule.exposure)
    yield from _change_problems(rule)


def validate_rule(raw: object, *, index: int = 0, where: str = "") -> Rule:
    """One rule from its parsed YAML mapping; raises RuleError naming the rule and each bad field."""
    name = _rule_name(raw, index)
    try:
        rule = Rule.model_validate(raw)
    except ValidationError as exc:
        issues = []
        for error in exc.errors(include_url=False):
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            issues.append(RuleIssue(name, _field(error["loc"]), message, where))
        raise RuleError(issues) from None
    problems = [RuleIssue(name, field, message, where) for field, message in _rule_problems(rule)]
    if problems:
        raise RuleError(problems)
    return rule


def _corroboration_problems(pattern: Corroboration) -> Iterable[tuple[str, str]]:
    for kind in pattern.kinds:
        if kind not in KINDS:
            yield f"kinds.{kind}", "unknown sensor kind"
    if ":" not in pattern.source:
        yield "source", "cite as '<standard or source>: <detail>'"


def parse_rules(document: object, *, where: str = "") -> RuleSet:
    """A RuleSet from a parsed YAML document (plain mappings and lists); RuleError lists every problem."""
    if not isinstance(document, Mapping):
        raise RuleError([RuleIssue("(file)", "", "expected a mapping with a 'rules' list at the top", where)])
    issues: list[RuleIssue] = []
    rules: list[Rule] = []
    raw_rules = document.get("rules", [])
    if not isinstance(raw_rules, list):
        issues.append(RuleIssue("(file)", "rules", "must be a list of rules", where))
        raw_rules = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        try:
            rule = validate_rule(raw, index=index, where=where)
        except RuleError as exc:
            issues.extend(exc.issues)
            continue
        if rule.id in seen:
            issues.append(RuleIssue(rule.id, "id", "duplicate rule id", where))
        seen.add(rule.id)
        rules.append(rule)
    patterns: list[Corroboration] = []
    raw_patterns = document.get("corroboration", [])
    for index, raw in enumerate(raw_patterns if isinstance(raw_patterns, list) else []):
        name = f"corroboration {_rule_name(raw, index)}"
        try:
            pattern = Corroboration.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
                issues.append(RuleIssue(name, _field(error["loc"]), message, where))
            continue
        issues.extend(RuleIssue(name, field, message, where) for field, message in _corroboration_problems(pattern))
        patterns.append(pattern)
    rest = {key: value for key, value in document.items() if key not in ("rules", "corroboration")}
    try:
        ruleset = RuleSet.model_validate({**rest, "rules": rules, "corroboration": patterns})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            issues.append(RuleIssue("(file)", _field(error["loc"]), message, where))
        raise RuleError(issues) from None
    try:
        zoneinfo.ZoneInfo(ruleset.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        issues.append(RuleIssue("(file)", "timezone", f"unknown time zone {ruleset.timezone!r}", where))
    if issues:
        raise RuleError(issues)
    return ruleset


def _plain(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _load_text(text: str, where: str) -> RuleSet:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReusedAnchorWarning)  # an anchor named twice: which one is meant?
            document = YAML(typ="safe").load(text)
    except ReusedAnchorWarning as exc:
        raise RuleError([RuleIssue("(file)", "", f"not valid YAML: {exc}".strip(), where)]) from None
    except YAMLError as exc:
        raise RuleError([RuleIssue("(file)", "", f"not valid YAML: {exc}", where)]) from None
    except (ValueError, RecursionError) as exc:  # ruamel: "!!float abc", a date that is none (2026-02-30)
        raise RuleError([RuleIssue("(file)", "", f"not valid YAML: {type(exc).__name__}: {exc}", where)]) from None
    return parse_rules(_plain(document), where=where)


def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """Read and validate a rules YAML file; RuleError names the file, each rule and each bad field."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError([RuleIssue("(file)", "", f"cannot read: {exc.strerror}", str(file))]) from None
    return _load_text(text, str(file))


def default_rules() -> RuleSet:
    """The shipped default rule set (``defaults.yaml`` beside this module: one rule per set point of
    ../shared/SENSORS.md, each citing its source)."""
    text = resources.files(__package__).joinpath("defaults.yaml").read_text(encoding="utf-8")
    return _load_text(text, "hub/detection/rules/defaults.yaml")
