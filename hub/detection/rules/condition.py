"""One rule on one sensor, reading by reading: the trigger (level, rate, exposure, change) and the delays around it.

``step`` is the per-reading logic the engine runs only for sensors that are "interesting" (a value outside
their quiet band, or a rule not idle); ``Plan.quiet_band`` is the set of values at which an *idle* rule stays
idle, so skipping such readings makes no difference to any decision. ``tests/hub/detection`` checks that
equivalence against an engine that judges every reading.

Time: decisions happen at readings (Unix ms), never on a timer: "above X for T s" fires at the first reading at
least T s after the run began. A silence longer than ``Rule.max_gap_s`` restarts every timer (duration, delays,
rate window; the dose integrates at most that long), because what happened in between is unknown.

The ``change`` window (the increase of a cumulative register, value(now) − value(now − within_s)):

* Comparison: as the sources phrase it ("< 0.01 m³ in 12 h", "> 2 m³ in 24 h"), the trigger holds while the
  increase is strictly less than ``below`` (more than ``above``) and clears once it is at or past
  ``hysteresis.clear`` (≥ 0.02 m³ of use; ≤ 1.5 m³ left of a leak). The increase is rounded to ``CHANGE_DIGITS``.
* Coverage: it is judged only once the window is covered, i.e. the first reading since the window last
  (re)started is at least ``within_s`` old. A meter installed an hour ago has not had "no use for 12 h". Until
  then the trigger keeps its last verdict: a restart neither raises nor clears an alarm by itself.
* Memory: O(1) per sensor. The history is cut into ``CHANGE_BUCKETS`` (48) buckets per window, counted from the
  window's start, and keeps the first reading of each bucket (at most 50 points) plus the newest value.
* Reference: value(now − within_s) is the newest kept point at or before now − within_s, so the judged span is
  never shorter than ``within_s`` and at most one bucket (``within_s``/48: 15 min for 12 h, 30 min for 24 h) plus
  one reading interval longer. Hence "no use for 12 h" never fires before 12 h without use, and fires at the
  first reading at least 12 h after the first kept point that shows the last use: exactly 12 h after it when
  that reading opens a bucket, at most 15 min + one reading interval late otherwise. A leak is judged over 24 h
  to 24 h 30 min (+ one interval). The first reading after a restart opens the first bucket.
* Restarts: a decrease of the register (meter replaced or reset) and a silence longer than ``max_gap_s`` start
  the window again from the current reading.
* Out-of-order and NaN readings never reach ``step`` (the engine skips and counts them), so a late, lower
  reading does not look like a reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.detection.rules.exposure import DoseCurve
from hub.detection.rules.model import Rule
from hub.detection.rules.schedule import LocalClock, active_window

__all__ = ["Change", "Plan", "RuleState", "step"]

CHANGE_BUCKETS = 48
"""Buckets per ``change`` window: the time resolution of the window's start is ``within_s`` / 48."""
CHANGE_DIGITS = 9
"""A change rule's increase is rounded to 1e-9 of the unit: 842.327 − 842.317 is 0.01 m³, not 0.00999999999999
(a register of up to 10⁶ m³ has float steps of ~1e-10)."""

HISTORY_LIMIT = 512
"""Most points a rate window keeps (a sensor reporting 10×/s over a 60 s window keeps the newest 512 s/… —
bounded memory; the slope is then over a shorter span, never a longer one)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated rule with its numbers in the units ``step`` uses (ms, per-ms) and its quiet band."""

    rule: Rule
    above: bool
    value: float
    clear: float
    duration_ms: int
    delay_on_ms: int
    delay_off_ms: int
    max_gap_ms: int
    within_ms: int
    """A change rule's window (0 for other triggers)."""
    bucket_ms: int
    """A change rule's bucket: ``within_ms`` / CHANGE_BUCKETS (the resolution of the window's start)."""
    curve: DoseCurve | None
    quiet_low: float
    quiet_high: float

    @classmethod
    def of(cls, rule: Rule) -> Plan:
        above, value, clear = True, math.nan, math.nan
        low, high = -math.inf, math.inf
        within_ms = 0
        if rule.level is not None:
            above, value, clear = rule.level.is_above, rule.level.value, rule.clear_level
            limits = [value, *(window.value for window in rule.schedule)]
            low, high = (-math.inf, min(limits)) if above else (max(limits), math.inf)
        elif rule.rate is not None:
            # below min_value an idle rate rule stays idle; without min_value no value is quiet
            low, high = (-math.inf, rule.rate.min_value) if rule.rate.min_value is not None else (math.inf, -math.inf)
        elif rule.exposure is not None:
            low, high = -math.inf, rule.exposure.start_ppm
        elif rule.change is not None:
            # every reading of a register moves the window: no value is quiet
            above, value, clear = rule.change.is_above, rule.change.value, rule.clear_level
            low, high = math.inf, -math.inf
            within_ms = round(rule.change.within_s * 1000)
        return cls(
            rule=rule,
            above=above,
            value=value,
            clear=clear,
            duration_ms=round(rule.duration_s * 1000),
            delay_on_ms=round(rule.delay.on_s * 1000),
            delay_off_ms=round(rule.delay.off_s * 1000),
            max_gap_ms=round(rule.max_gap_s * 1000),
            within_ms=within_ms,
            bucket_ms=max(1, within_ms // CHANGE_BUCKETS),
            curve=DoseCurve.of(rule.exposure) if rule.exposure is not None else None,
            quiet_low=low,
            quiet_high=high,
        )

    def limits(self, time_ms: int, clock: LocalClock) -> tuple[float, float]:
        """(set point, clear level) in force at ``time_ms`` (the schedule window's, else the rule's)."""
        if not self.rule.schedule:
            return self.value, self.clear
        window = active_window(self.rule.schedule, *clock.weekday_minute(time_ms))
        if window is None:
            return self.value, self.clear
        return window.value, window.clear if window.clear is not None else window.value


@dataclass(slots=True)
class RuleState:
    """What one rule remembers about one sensor; plain data so it survives a restart (``to_json``)."""

    alarmed: bool = False
    latched: bool = False
    """The trigger with hysteresis (level crossed and not yet back past clear; rate above clear rate; dose ≥ clear)."""
    counting: bool = False
    run_start_ms: int | None = None
    on_since_ms: int | None = None
    off_since_ms: int | None = None
    crossings: list[int] = field(default_factory=list)
    history: list[tuple[int, float]] = field(default_factory=list)
    dose: float = 0.0
    rate_before: float = 0.0
    last_value: float | None = None
    """A change rule's newest reading (a lower one is a reset register); ``history`` holds its bucket starts and
    ``run_start_ms`` the window's start."""

    def idle(self) -> bool:
        """True when a reading inside the rule's quiet band would change nothing."""
        return not (
            self.alarmed
            or self.latched
            or self.counting
            or self.run_start_ms is not None
            or self.on_since_ms is not None
            or self.off_since_ms is not None
            or self.crossings
            or self.history
            or self.dose
            or self.rate_before
            or self.last_value is not None
        )

    def to_json(self) -> dict[str, Any]:
        """Only the fields that differ from an idle state (JSON types only)."""
        data: dict[str, Any] = {}
        for name in ("alarmed", "latched", "counting"):
            if getattr(self, name):
                data[name] = True
        for name in ("run_start_ms", "on_since_ms", "off_since_ms"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        if self.crossings:
            data["crossings"] = list(self.crossings)
        if self.history:
            data["history"] = [[time_ms, value] for time_ms, value in self.history]
        if self.dose:
            data["dose"] = self.dose
        if self.rate_before:
            data["rate_before"] = self.rate_before
        if self.last_value is not None:
            data["last_value"] = self.last_value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleState:
        def optional_int(name: str) -> int | None:
            value = data.get(name)
            return None if value is None else int(value)

        return cls(
            alarmed=bool(data.get("alarmed", False)),
            latched=bool(data.get("latched", False)),
            counting=bool(data.get("counting", False)),
            run_start_ms=optional_int("run_start_ms"),
            on_since_ms=optional_int("on_since_ms"),
            off_since_ms=optional_int("off_since_ms"),
            crossings=[int(t) for t in data.get("crossings", [])],
            history=[(int(t), float(v)) for t, v in data.get("history", [])],
            dose=float(data.get("dose", 0.0)),
            rate_before=float(data.get("rate_before", 0.0)),
            last_value=None if data.get("last_value") is None else float(data["last_value"]),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """What a reading did to a rule: ``status`` when the alarm fired or cleared, and what to show.

    ``shown`` is the measured quantity (the reading; the slope per minute for a rate rule; the increase over the
    window for a change rule), ``threshold`` the limit it was compared with (None for a dose), ``per_minute``
    True when both are per minute, ``within_s`` the window when both are an increase over it.
    """

    status: Literal["firing", "cleared"] | None
    shown: float
    threshold: float | None
    per_minute: bool = False
    within_s: float | None = None


def _level(plan: Plan, state: RuleState, time_ms: int, value: float, gap: bool, clock: LocalClock) -> Change:
    limit, clear = plan.limits(time_ms, clock)
    crossed = value >= limit if plan.above else value <= limit
    past_clear = value < clear if plan.above else value > clear
    count = plan.rule.count
    if count is not None:
        if not state.latched and crossed:
            state.latched = True
            state.crossings.append(time_ms)
        elif state.latched and past_clear:
            state.latched = False
        cutoff = time_ms - round(count.within_s * 1000)
        state.crossings = [t for t in state.crossings if t > cutoff]
        state.counting = bool(state.crossings) if state.counting else len(state.crossings) >= count.crossings
        return Change(None, value, limit)
    if plan.duration_ms:
        if crossed:
            if state.run_start_ms is None or gap:
                state.run_start_ms = time_ms
        else:
            state.run_start_ms = None
        if not state.latched:
            state.latched = state.run_start_ms is not None and time_ms - state.run_start_ms >= plan.duration_ms
        elif past_clear:
            state.latched = False
        return Change(None, value, limit)
    if not state.latched:
        state.latched = crossed
    elif past_clear:
        state.latched = False
    return Change(None, value, limit)


def _rate(plan: Plan, state: RuleState, time_ms: int, value: float, gap: bool) -> Change:
    rate = plan.rule.rate
    if rate is None:
        raise ValueError(f"rule {plan.rule.id} has no rate")
    if rate.min_value is not None and value < rate.min_value:
        state.history.clear()
        state.latched = False
        return Change(None, math.nan, rate.rise_per_min, per_minute=True)
    if gap:
        state.history.clear()
    history = state.history
    history.append((time_ms, value))
    window_ms = rate.window_s * 1000
    while len(history) >= 2 and history[1][0] <= time_ms - window_ms:
        del history[0]
    if len(history) > HISTORY_LIMIT:
        del history[: len(history) - HISTORY_LIMIT]
    first_ms, first_value = history[0]
    span_ms = time_ms - first_ms
    if span_ms < window_ms / 2:
        return Change(None, math.nan, rate.rise_per_min, per_minute=True)
    slope = (value - first_value) / span_ms * 60_000.0
    clear = rate.clear_per_min if rate.clear_per_min is not None else rate.rise_per_min / 2
    state.latched = slope >= (clear if state.latched else rate.rise_per_min)
    return Change(None, slope, rate.rise_per_min, per_minute=True)


def _change(plan: Plan, state: RuleState, time_ms: int, value: float, gap: bool) -> Change:
    """The increase of the register over the trailing window against the limit (module docstring)."""
    change = plan.rule.change
    if change is None:
        raise ValueError(f"rule {plan.rule.id} has no change")
    history = state.history
    reset = state.last_value is not None and value < state.last_value
    if state.run_start_ms is None or gap or reset:
        history.clear()
        state.run_start_ms = time_ms
    state.last_value = value
    start, bucket_ms = state.run_start_ms, plan.bucket_ms
    if not history or (history[-1][0] - start) // bucket_ms != (time_ms - start) // bucket_ms:
        history.append((time_ms, value))
    boundary = time_ms - plan.within_ms
    while len(history) >= 2 and history[1][0] <= boundary:
        del history[0]
    if history[0][0] > boundary:  # not covered yet: keep the verdict
        return Change(None, math.nan, plan.value, within_s=change.within_s)
    increase = round(value - history[0][1], CHANGE_DIGITS)
    if plan.above:
        crossed, past_clear = increase > plan.value, increase <= plan.clear
    else:
        crossed, past_clear = increase < plan.value, increase >= plan.clear
    if not state.latched:
        state.latched = crossed
    elif past_clear:
        state.latched = False
    return Change(None, increase, plan.value, within_s=change.within_s)


def _exposure(plan: Plan, state: RuleState, time_ms: int, value: float, prev_ms: int | None) -> Change:
    curve, exposure = plan.curve, plan.rule.exposure
    if curve is None or exposure is None:
        raise ValueError(f"rule {plan.rule.id} has no exposure")
    rate_now = curve.rate(value)
    minutes = 0.0 if prev_ms is None else min(time_ms - prev_ms, plan.max_gap_ms) / 60_000.0
    state.dose = curve.step(state.dose, state.rate_before, rate_now, minutes)
    state.rate_before = rate_now
    state.latched = state.dose >= (exposure.clear_dose if state.latched else 1.0)
    return Change(None, value, None)


def step(plan: Plan, state: RuleState, time_ms: int, value: float, prev_ms: int | None, clock: LocalClock) -> Change:
    """Judge one reading (``value`` in the kind's unit at ``time_ms``, Unix ms; ``prev_ms`` the sensor's previous
    reading, None for its first) and apply the delays: ``Change.status`` says whether the alarm fired or cleared.

    Delay-on: the trigger must hold from one reading until a reading ``delay.on_s`` later (a fume of steam that
    passes in 20 s never pages anyone with a 30 s delay). Delay-off: the trigger must stay off that long before
    the alarm clears (a value dipping for one reading does not close and re-open the alert).
    """
    gap = prev_ms is not None and time_ms - prev_ms > plan.max_gap_ms
    rule = plan.rule
    if rule.level is not None:
        change = _level(plan, state, time_ms, value, gap, clock)
        trigger = state.counting if rule.count is not None else state.latched
    elif rule.rate is not None:
        change = _rate(plan, state, time_ms, value, gap)
        trigger = state.latched
    elif rule.change is not None:
        change = _change(plan, state, time_ms, value, gap)
        trigger = state.latched
    else:
        change = _exposure(plan, state, time_ms, value, prev_ms)
        trigger = state.latched
    status: Literal["firing", "cleared"] | None = None
    if not state.alarmed:
        state.off_since_ms = None
        if not trigger:
            state.on_since_ms = None
        else:
            if state.on_since_ms is None or gap:
                state.on_since_ms = time_ms
            if time_ms - state.on_since_ms >= plan.delay_on_ms:
                state.alarmed, state.on_since_ms, status = True, None, "firing"
    else:
        state.on_since_ms = None
        if trigger:
            state.off_since_ms = None
        else:
            if state.off_since_ms is None or gap:
                state.off_since_ms = time_ms
            if time_ms - state.off_since_ms >= plan.delay_off_ms:
                state.alarmed, state.off_since_ms, status = False, None, "cleared"
    if status is None:
        return change
    return Change(status, change.shown, change.threshold, change.per_minute, change.within_s)
