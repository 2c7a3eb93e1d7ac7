"""The rule engine: every sensor's rules, streaming, vectorised across sensors, with restartable state.

A round of readings arrives as columns (sensor row, Unix ms, value). Per sensor row the engine keeps in numpy
the newest time judged, the *quiet band* (values at which every rule of the sensor, when idle, stays idle —
below the lowest set point of an 'above' rule, under a rate rule's ``min_value``, under the CO dose's
``start_ppm``; a ``change`` rule has none: every reading of a register moves its window) and whether any rule
is busy (alarmed, latched, timing, counting, holding a rate or change window or a dose). A reading inside its
band of a sensor that is not busy cannot change anything, so screening costs a few vector operations over the
round; only the readings of the other sensors go through ``condition.step``, in time order. ``screen=False``
judges every reading (the reference the tests compare screening against).

Streaming: a decision at time t uses only readings up to t. A reading not newer than the newest one already
seen for its sensor (a replay after a gateway restart, a late duplicate) is not judged; NaN and ±inf are
refused upstream but skipped here too. Both are counted (``skipped_late``, ``skipped_invalid``).

Events: rules of one sensor with the same ``group`` share the condition key ``{community}/{sensor}/{kind}/
{group}`` (ungrouped rules use their id) and report the most severe rule firing: a worse rule firing re-fires
the key at the worse grade, the worst clearing while a milder one still fires re-states the milder one, the
last clearing clears the key. Context tags raise grades one step (never past II), except a rule's own
``only_tags`` (its premise, model.py); corroboration patterns fire on keys of their own (corroboration.py).

``to_state()`` is plain JSON data; ``RuleEngine(...).restore(state)`` makes a new engine continue
exactly where the old one stopped, so a hub restart re-sends nothing and does not re-judge replayed readings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from alerts.model import Grade, RiskEvent
from hub.detection.observations import Observations
from hub.detection.rules.condition import Change, Plan, RuleState, step
from hub.detection.rules.context import SensorContext, raised_grade
from hub.detection.rules.corroboration import PlaceWatch, Verdict
from hub.detection.rules.model import GRADE_NUMBERS, Rule, RuleSet
from hub.detection.rules.schedule import LocalClock
from hub.ingest.registry import SensorInfo
from protocol import Reading

__all__ = ["STATE_VERSION", "RuleEngine"]

STATE_VERSION = 1
_NEVER = np.iinfo(np.int64).min


@dataclass(slots=True)
class _Sensor:
    info: SensorInfo
    plans: tuple[Plan, ...]
    states: list[RuleState]
    groups: dict[str, tuple[int, ...]]
    space: str
    building: str
    tags: frozenset[str]

    def worst(self, indices: Iterable[int]) -> int | None:
        """The index of the most severe alarmed rule among ``indices`` (file order breaks ties)."""
        best: int | None = None
        for index in indices:
            if self.states[index].alarmed and (
                best is None or self.plans[index].rule.grade_number < self.plans[best].rule.grade_number
            ):
                best = index
        return best


def _duration(seconds: float) -> str:
    """``43200`` → ``12 h``, ``600`` → ``10 min``, ``45`` → ``45 s`` (a change rule's window, shown with its unit)."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class RuleEngine:
    """Judges readings against each sensor's rules and returns risk events (module docstring)."""

    def __init__(
        self,
        *,
        community: str,
        ruleset: RuleSet,
        sensors: Sequence[SensorInfo],
        community_name: str = "",
        rules: Mapping[str, Sequence[Rule]] | None = None,
        contexts: Mapping[str, SensorContext] | None = None,
        screen: bool = True,
    ) -> None:
        """``sensors`` with their registry rows (``SensorInfo.index``, 0 … n-1); ``rules`` per sensor id (default:
        ``ruleset``'s enabled rules of the sensor's kind that apply to its tags, ``Rule.only_tags``);
        overrides.resolve_rules builds it from a deployment, ``only_tags`` already applied: rules given here are
        in force as given, so ``anju-hub rules test`` replays a tagged rule on untagged recorded data);
        ``contexts`` per sensor id (space, building, tags)."""
        self.community = community
        self.community_name = community_name
        self.ruleset = ruleset
        self.clock = LocalClock.named(ruleset.timezone)
        self.skipped_late = 0
        """Readings not newer than the newest seen for their sensor (not judged)."""
        self.skipped_invalid = 0
        """NaN or infinite readings (not judged; the ingest validation refuses them first)."""
        self._screen = screen
        self._raising = frozenset(ruleset.raise_grade_tags)
        contexts = contexts or {}
        size = max((info.index for info in sensors), default=-1) + 1
        if any(info.index < 0 for info in sensors):
            raise ValueError("every sensor needs its registry row (SensorInfo.index >= 0)")
        self._sensors: list[_Sensor | None] = [None] * size
        self._by_id: dict[str, _Sensor] = {}
        self._newest = np.full(size, _NEVER, np.int64)
        self._low = np.full(size, -np.inf)
        self._high = np.full(size, np.inf)
        self._busy = np.zeros(size, bool)
        self._spacing = np.zeros(size, np.int64)
        """Least device-time ms between two judged readings of a sensor whose rules are all ``change`` rules (a
        third of their bucket: 5 min for 12 h): a meter read every minute needs no more to place its window."""
        self._judged_at = np.zeros(size, np.int64)
        space_kinds: dict[str, str] = {}
        building_kinds: dict[str, str] = {}
        for info in sensors:
            context = contexts.get(info.id)
            tags = context.tags if context is not None else frozenset[str]()
            if rules is not None and info.id in rules:
                chosen = tuple(rules[info.id])
            else:
                chosen = tuple(rule for rule in ruleset.for_kind(info.kind.name) if rule.applies_to(tags))
            plans = tuple(Plan.of(rule) for rule in chosen)
            groups: dict[str, list[int]] = {}
            for index, plan in enumerate(plans):
                groups.setdefault(plan.rule.condition, []).append(index)
            sensor = _Sensor(
                info=info,
                plans=plans,
                states=[RuleState() for _ in plans],
                groups={name: tuple(indices) for name, indices in groups.items()},
                space=context.space if context is not None else "",
                building=context.building if context is not None else "",
                tags=tags,
            )
            if self._sensors[info.index] is not None:
                raise ValueError(f"two sensors on registry row {info.index}")
            self._sensors[info.index] = sensor
            self._by_id[info.id] = sensor
            if plans:
                self._low[info.index] = max(plan.quiet_low for plan in plans)
                self._high[info.index] = min(plan.quiet_high for plan in plans)
                if all(plan.rule.change is not None for plan in plans):
                    self._spacing[info.index] = min(plan.bucket_ms for plan in plans) // 3
            if sensor.space:
                space_kinds[info.id] = info.kind.name
            if sensor.building:
                building_kinds[info.id] = info.kind.name
        by_scope = {scope: [p for p in ruleset.corroboration if p.scope == scope] for scope in ("space", "building")}
        self._watch = PlaceWatch(by_scope["space"], space_kinds)
        spaces = {sensor_id: sensor.space for sensor_id, sensor in self._by_id.items() if sensor.space}
        self._building_watch = PlaceWatch(by_scope["building"], building_kinds, spaces)

    # -- judging -------------------------------------------------------------------------------------------------

    def observe(self, readings: Sequence[tuple[Reading, SensorInfo]]) -> list[RiskEvent]:
        """Judge readings given as objects (tests, small callers); the ingest path uses ``observe_columns``."""
        n = len(readings)
        return self.observe_columns(
            np.fromiter((info.index for _, info in readings), np.intp, n),
            np.fromiter((reading.time_ms for reading, _ in readings), np.int64, n),
            np.fromiter((reading.value for reading, _ in readings), np.float64, n),
        )

    def observe_round(self, seen: Observations) -> list[RiskEvent]:
        """An ingest round's judged readings (the hub's ``Ingest`` calls this)."""
        return self.observe_columns(seen.rows, seen.times_ms, seen.values)

    def observe_columns(
        self, rows: npt.NDArray[np.intp], times_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> list[RiskEvent]:
        """Judge one round of readings: reading i is ``values[i]`` (the kind's unit) of sensor row ``rows[i]`` at
        ``times_ms[i]`` (Unix ms). Any order across sensors; each sensor's readings are judged in time order.
        Returns the events in the order their readings were judged."""
        n = len(rows)
        if n == 0:
            return []
        if int(rows.min()) < 0 or int(rows.max()) >= len(self._sensors):
            raise ValueError("a reading's sensor row is not one of the engine's sensors")
        valid = np.isfinite(values)
        fresh = times_ms > self._newest[rows]
        ok = valid & fresh
        all_ok = bool(ok.all())
        if not all_ok:
            self.skipped_invalid += n - int(np.count_nonzero(valid))
            self.skipped_late += int(np.count_nonzero(valid & ~fresh))
        if self._screen:
            loud = ~((values > self._low[rows]) & (values < self._high[rows]))
            loud |= self._busy[rows]
            loud &= times_ms - self._judged_at[rows] >= self._spacing[rows]
            if not all_ok:
                loud &= ok
        else:
            loud = ok
        events: list[RiskEvent] = []
        if loud.any():
            marked = np.zeros(len(self._sensors), bool)
            marked[rows[loud]] = True
            judged = np.flatnonzero(marked[rows] & ok)
            order = judged[np.argsort(times_ms[judged], kind="stable")]
            events = self._judge(rows[order].tolist(), times_ms[order].tolist(), values[order].tolist())
            np.maximum.at(self._judged_at, rows[order], times_ms[order])
        if all_ok:
            np.maximum.at(self._newest, rows, times_ms)
        else:
            np.maximum.at(self._newest, rows[ok], times_ms[ok])
        return events

    def _judge(self, rows: list[int], times_ms: list[int], values: list[float]) -> list[RiskEvent]:
        events: list[RiskEvent] = []
        newest = self._newest
        for row, time_ms, value in zip(rows, times_ms, values, strict=True):
            previous = int(newest[row])
            if time_ms <= previous:
                self.skipped_late += 1
                continue
            newest[row] = time_ms
            sensor = self._sensors[row]
            if sensor is None or not sensor.plans:
                continue
            events.extend(self._reading(sensor, time_ms, value, None if previous == _NEVER else previous))
        return events

    def _reading(self, sensor: _Sensor, time_ms: int, value: float, previous: int | None) -> list[RiskEvent]:
        before = {name: sensor.worst(indices) for name, indices in sensor.groups.items()}
        worst_before = sensor.worst(range(len(sensor.plans)))
        changes = [
            step(plan, state, time_ms, value, previous, self.clock)
            for plan, state in zip(sensor.plans, sensor.states, strict=True)
        ]
        self._busy[sensor.info.index] = not all(state.idle() for state in sensor.states)
        if not any(change.status for change in changes):
            return []
        events = []
        for name, indices in sensor.groups.items():
            after = sensor.worst(indices)
            if after == before[name]:
                continue
            if after is None:
                gone = before[name]
                if gone is not None:
                    events.append(self._event(sensor, gone, changes[gone], value, time_ms, "cleared"))
            else:
                events.append(self._event(sensor, after, changes[after], value, time_ms, "firing"))
        worst_after = sensor.worst(range(len(sensor.plans)))
        if worst_after != worst_before:
            grade = None if worst_after is None else sensor.plans[worst_after].rule.grade_number
            for watch, place in ((self._watch, sensor.space), (self._building_watch, sensor.building)):
                if place:
                    for verdict in watch.update(place, sensor.info.id, grade):
                        events.append(self._corroboration_event(sensor, verdict, value, time_ms))
        return events

    # -- events --------------------------------------------------------------------------------------------------

    def _event(
        self,
        sensor: _Sensor,
        index: int,
        change: Change,
        value: float,
        time_ms: int,
        status: Literal["firing", "cleared"],
    ) -> RiskEvent:
        rule = sensor.plans[index].rule
        kind = sensor.info.kind
        shown, unit, threshold = change.shown, kind.unit, change.threshold
        if change.per_minute:
            unit = f"{kind.unit}/min"
        elif change.within_s is not None:
            unit = f"{kind.unit} in {_duration(change.within_s)}"
        if not math.isfinite(shown):
            shown, unit, threshold = value, kind.unit, None
        return RiskEvent(
            key=f"{self.community}/{sensor.info.id}/{kind.name}/{rule.condition}",
            community=self.community,
            grid=sensor.info.grid,
            sensor=sensor.info.id,
            kind=kind.name,
            location_zh=f"{self.community_name} {sensor.info.location}".strip(),
            rule=rule.name,
            grade=Grade(raised_grade(rule.grade_number, sensor.tags.difference(rule.only_tags), self._raising)),
            value=shown,
            unit=unit,
            time_ms=time_ms,
            status=status,
            source=rule.source,
            threshold=threshold,
            rule_zh=rule.name_zh,
            below=rule.below,
            place=sensor.building,
        )

    def _corroboration_event(self, sensor: _Sensor, verdict: Verdict, value: float, time_ms: int) -> RiskEvent:
        pattern = verdict.pattern
        source = pattern.source
        if verdict.holds:
            source = f"{source}; sensors {', '.join(verdict.sensors)}; confidence {pattern.confidence:.2f}"
        grade = raised_grade(GRADE_NUMBERS[pattern.grade], sensor.tags, self._raising)
        # People read the place, not its id: where the detector that completed the pattern is (and, for a building
        # pattern, that there are others)
        where = sensor.info.location if pattern.scope == "space" else f"{sensor.info.location}等多处"
        return RiskEvent(
            key=f"{self.community}/{verdict.place}/corroboration/{pattern.id}",
            community=self.community,
            grid=sensor.info.grid,
            sensor=sensor.info.id,
            kind="corroboration",
            location_zh=f"{self.community_name} {where}".strip(),
            rule=pattern.name,
            grade=Grade(grade),
            value=value,
            unit=sensor.info.kind.unit,
            time_ms=time_ms,
            status="firing" if verdict.holds else "cleared",
            source=source,
            rule_zh=pattern.name_zh,
            members=verdict.sensors,
            place=sensor.building,
        )

    # -- state ---------------------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, as plain JSON data (ints, floats, strings, lists)."""
        sensors: dict[str, Any] = {}
        for sensor in self._by_id.values():
            newest = int(self._newest[sensor.info.index])
            busy = {
                plan.rule.id: state.to_json()
                for plan, state in zip(sensor.plans, sensor.states, strict=True)
                if not state.idle()
            }
            if newest == _NEVER and not busy:
                continue
            entry: dict[str, Any] = {"newest_ms": newest}
            if busy:
                entry["rules"] = busy
            sensors[sensor.info.id] = entry
        return {
            "version": STATE_VERSION,
            "community": self.community,
            "sensors": sensors,
            "spaces": self._watch.to_json(),
            "buildings": self._building_watch.to_json(),
            "skipped_late": self.skipped_late,
            "skipped_invalid": self.skipped_invalid,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (``to_state()`` of an earlier engine), on a freshly built engine.

        Sensors or rules that are gone from the configuration are dropped from the state; new ones start idle. A
        state of another version or community is refused (ValueError) rather than half-applied.
        """
        engine, community = self, self.community
        if state.get("version") != STATE_VERSION or state.get("community") != community:
            raise ValueError(
                f"rule engine state of version {state.get('version')!r} for community {state.get('community')!r} "
                f"cannot be loaded into version {STATE_VERSION} for {community!r}"
            )
        for sensor_id, entry in dict(state.get("sensors", {})).items():
            sensor = engine._by_id.get(sensor_id)
            if sensor is None:
                continue
            row = sensor.info.index
            engine._newest[row] = int(entry.get("newest_ms", _NEVER))
            saved = entry.get("rules", {})
            for index, plan in enumerate(sensor.plans):
                if plan.rule.id in saved:
                    sensor.states[index] = RuleState.from_json(saved[plan.rule.id])
            engine._busy[row] = not all(rule_state.idle() for rule_state in sensor.states)
        engine._watch.load_json(dict(state.get("spaces", {})))
        engine._building_watch.load_json(dict(state.get("buildings", {})))
        engine.skipped_late = int(state.get("skipped_late", 0))
        engine.skipped_invalid = int(state.get("skipped_invalid", 0))
