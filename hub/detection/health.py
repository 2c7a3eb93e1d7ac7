"""Sensor health (issue 5, layer 2): detectors whose readings cannot be trusted, each its own risk event.

A detector that is stuck, drifting, out of its physical range, low on battery, opened or faulty does not protect
anyone, and it is the property company's job to fix (SENSORS.md: grade IV, device fault / low battery, answered
within 24 h). Every condition is a grade-IV event of its own key ``{community}/{sensor}/health/{rule}``, firing
once when it begins and cleared once when it ends; offline and stale detectors are ``hub.ingest.liveness``'s.

Rules:

- ``stuck``: the value has not changed for much longer than this sensor's own longest unchanged run so far
  (``STUCK_FACTOR`` times, at least ``STUCK_MIN_MS``). The sensor's history is the reference, not a per-kind
  constant: a gas cell in clean air legitimately reads 0.0 for days, a temperature probe never repeats for an
  hour. Learned only once the sensor has changed ``STUCK_WARM_CHANGES`` times over ``STUCK_WARM_MS`` (one whole
  day, so a quiet night is part of what is normal); runs that were flagged are not learned (a stuck spell must
  not teach that stuck spells are normal). Two-state detectors and cumulative meters are exempt: a closed door
  and a meter of an empty flat are legitimately constant. A gap longer than ``STUCK_GAP_MS`` starts a new run.
- ``drift``: a sensor's slow level (exponential mean, ``DRIFT_TAU_MS``) moved away from the other detectors of
  the same kind in the same space (deployment ``space``) by more than the kind's ``DRIFT_TOLERANCE``, after
  subtracting the offset it normally has from them (learned over ``DRIFT_LEARN_MS``, then very slowly). With
  three or more detectors the reference is their median, so the drifting one is named; with two, each is
  compared with the other and both are named (one of them drifted; a person has to look). A gas, CO or smoke
  detector without such neighbours is compared with its own clean-air level of its first days (``ZERO_KINDS``).
  Judged once every ``DRIFT_EVERY_MS`` of reading time.
  While a detector's drift condition is open, the rules judge its readings net of its upward drift (zero
  tracking, as gas detectors do themselves): the correction follows the drift, but grows by at most the kind's
  tolerance every ``DRIFT_CORRECTION_GROWTH_MS``, so an ageing cell (CO: 2 ppm a day) is tracked while a real
  leak or fire, which rises in minutes, is not absorbed. Only upward drift is removed: a reading is never raised,
  so a low-pressure or no-use rule only becomes more sensitive. The rules' events say by how much (``correction_note``).
- ``out-of-range``: a value outside the kind's physical range, refused by the hub's validation or (counted
  per detector) by the gateway; cleared after ``OUT_OF_RANGE_CLEAR_MS`` without another.
- ``low-battery``, ``tamper``, ``device-fault``, ``shielded``: the detector's own header (GB/T 45839 status 3
  fault or 4 shielded; fault flags bit 0 low battery, bit 1 tamper; battery ``<= LOW_BATTERY_PCT``) as the
  gateway's health report lists it. The list is a full snapshot: a detector missing from it is well.

Streaming and causal: a decision at time t uses readings up to t. Per reading O(1) and vectorised across
sensors (numpy); state per sensor is a few numbers, saved as JSON by sensor id (``to_state``/``restore``).
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.model import Grade, RiskEvent
from hub.detection.observations import Observations
from hub.ingest.registry import SensorInfo
from protocol.registers import FAULT_LOW_BATTERY, FAULT_TAMPER, Status
from protocol.telemetry import DeviceStatus

__all__ = ["DRIFT_TOLERANCE", "HEALTH_RULES", "SensorHealth"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

STUCK_FACTOR = 3.0
STUCK_MIN_MS = 2 * HOUR_MS
"""A stuck spell is reported once it lasts 3× the longest unchanged run seen, and never before 2 h: a grade-IV
maintenance call (answered within 24 h) loses nothing by waiting, and waiting keeps it quiet."""
STUCK_WARM_CHANGES = 50
STUCK_WARM_MS = DAY_MS
STUCK_GAP_MS = 3 * HOUR_MS
"""Readings further apart than this do not make one run: a detector back after an outage starts afresh."""
STUCK_EXEMPT_KINDS = frozenset({"water-meter"})
"""Cumulative meters (a meter of an empty flat is constant; missing use is the rules' elder check). Two-state kinds
(range 0..1) are exempt as well."""

DRIFT_TAU_MS = 6 * HOUR_MS
"""Time constant of the slow level: cooking, a shower or a leak near one detector pass; ageing stays."""
DRIFT_LEARN_MS = 2 * DAY_MS
DRIFT_OFFSET_TAU_MS = 90 * DAY_MS
"""The normal offset between neighbours is their mean difference over the first two days, then follows seasons
(a detector by a window) this slowly: a cell ageing over weeks stays visible."""
DRIFT_EVERY_MS = 60_000
DRIFT_FRESH_MS = HOUR_MS
"""Only detectors heard from within the last hour take part in a space's comparison."""
ZERO_KINDS = frozenset({"gas", "co", "smoke"})
"""Kinds whose clean-air reading is steady (near zero): a detector of these without neighbours is compared with its
own level over its first ``DRIFT_LEARN_MS`` (an ageing CO cell creeping up 2 ppm a day is seen long before it reaches
an alarm level; a real leak rises in minutes and the rules judge it)."""
DRIFT_TOLERANCE: Mapping[str, float] = {
    "gas": 5.0,
    "co": 15.0,
    "smoke": 0.05,
    "temperature": 2.0,
    "cable-temperature": 5.0,
    "water-depth": 0.025,
    "residual-current": 0.05,
    "pressure": 20_000.0,
    "manhole-tilt": 3.0,
    "structural-tilt": 0.0006,
}
"""Per kind, in its unit, how far apart neighbours may drift before a detector needs recalibration [D]: half the
lowest set point's distance from clean conditions (gas: half the 10 %LEL pre-warning; CO: half of EN 50291's
30 ppm; smoke: GB 4715's most sensitive 0.05 dB/m; water: half of the 5 cm grade IV; residual current: half the
200→300 mA gap; fire main: half the 0.14→0.10 MPa gap; structural tilt: a fifth of GB 50007's 0.003), and for
room and cable temperature twice a class-B probe's accuracy. Kinds not listed are not compared."""

DRIFT_CORRECTION_GROWTH_MS = 7 * DAY_MS
"""The drift correction grows by at most the kind's ``DRIFT_TOLERANCE`` in this long (CO: 15 ppm a week, 2.1 ppm a
day) [D]: electrochemical cells age by a few ppm a month to a few a day at worst; a concentration that rises faster
than that is treated as real. A real leak of constant level that outlasts the rules' alarm by days would be worn
down at this rate; by then it has been graded and answered, and the open drift condition names the detector."""

OUT_OF_RANGE_CLEAR_MS = HOUR_MS
LOW_BATTERY_PCT = 20
"""Battery level at which a detector is reported low even without its own low-battery flag [D]: independent
alarms warn at about this level and then run for weeks (GB 20517 checks the battery every 24 h)."""

HEALTH_RULES: Mapping[str, tuple[str, str]] = {
    "stuck": ("读数卡滞", "reading stuck"),
    "drift": ("与同区域探测器偏离（漂移）", "drifting from its neighbours"),
    "out-of-range": ("读数超出物理量程", "reading outside the physical range"),
    "low-battery": ("电池电量低", "low battery"),
    "tamper": ("防拆报警（外壳被打开或探测器被移除）", "tamper (enclosure opened or detector removed)"),
    "device-fault": ("探测器自检故障", "detector self-test fault"),
    "shielded": ("探测器被屏蔽", "detector shielded (disabled)"),
}
"""Rule name → (zh, en) shown in messages."""

_DEVICE_RULES = ("low-battery", "tamper", "device-fault", "shielded")
_NO_TIME = np.iinfo(np.int64).min
_STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class _Condition:
    rule: str
    value: float
    unit: str | None
    """None: the kind's unit (the value is a reading); "" for flags."""
    source: str


class SensorHealth:
    """The health layer of one community's detection. ``sensors`` are the registry's (``index`` is the row);
    ``spaces`` maps sensor id to its deployment ``space`` (sensors without one are not compared for drift)."""

    def __init__(
        self,
        *,
        community: str,
        community_name: str,
        sensors: Sequence[SensorInfo],
        spaces: Mapping[str, str],
    ) -> None:
        self.community = community
        self.community_name = community_name
        n = max((info.index for info in sensors), default=-1) + 1
        self._infos: list[SensorInfo | None] = [None] * n
        for info in sensors:
            self._infos[info.index] = info
        self._by_id = {info.id: info for info in sensors}
        self._on_gateway: dict[str, list[SensorInfo]] = {}
        for info in sensors:
            self._on_gateway.setdefault(info.gateway, []).append(info)
        self._eligible = np.zeros(n, bool)
        for info in sensors:
            two_state = info.kind.minimum == 0.0 and info.kind.maximum == 1.0
            self._eligible[info.index] = not two_state and info.kind.name not in STUCK_EXEMPT_KINDS
        self._last_value = np.full(n, np.nan)
        self._last_ms = np.full(n, _NO_TIME, np.int64)
        self._run_start = np.full(n, _NO_TIME, np.int64)
        self._first_ms = np.full(n, _NO_TIME, np.int64)
        self._changes = np.zeros(n, np.int64)
        self._longest = np.zeros(n, np.int64)
        self._stuck = np.zeros(n, bool)
        groups: dict[tuple[str, str], list[int]] = {}
        for info in sensors:
            space = spaces.get(info.id)
            if space is not None and info.kind.name in DRIFT_TOLERANCE:
                groups.setdefault((space, info.kind.name), []).append(info.index)
        compared = [rows for rows in groups.values() if len(rows) >= 2]
        self._members = np.array([row for rows in compared for row in rows], np.intp)
        self._group_of = np.full(n, -1, np.intp)
        self._tolerance = np.full(n, np.inf)
        for number, rows in enumerate(compared):
            self._group_of[rows] = number
        for info in sensors:
            if self._group_of[info.index] >= 0:
                self._tolerance[info.index] = DRIFT_TOLERANCE[info.kind.name]
        self._alone = np.array(
            [i.index for i in sensors if i.kind.name in ZERO_KINDS and self._group_of[i.index] < 0], np.intp
        )
        for row in self._alone.tolist():
            info = self._infos[row]
            assert info is not None
            self._tolerance[row] = DRIFT_TOLERANCE[info.kind.name]
        self._grouped = self._group_of >= 0
        self._grouped[self._alone] = True
        self._level = np.full(n, np.nan)
        self._level_ms = np.full(n, _NO_TIME, np.int64)
        self._offset = np.zeros(n)
        self._learn_from = np.full(n, _NO_TIME, np.int64)
        self._drifting = np.zeros(n, bool)
        self._correction = np.zeros(n)
        """Per row, the upward drift subtracted from readings before the rules judge them (kind's unit)."""
        self._correction_ms = np.full(n, _NO_TIME, np.int64)
        """Per row, when its correction last moved (the growth allowed is by elapsed reading time)."""
        self._correcting = False
        self._next_drift_ms = _NO_TIME
        self._out_of_range_ms: dict[int, int] = {}
        """Row → time of its latest out-of-range value, while its ``out-of-range`` event is firing."""
        self._garbage: dict[str, int] = {}
        self._device_firing: set[tuple[str, str]] = set()

    # ---- readings -------------------------------------------------------------------------------------------

    def observe_round(self, obs: Observations) -> list[RiskEvent]:
        """Judge an ingest round's readings (stuck, drift; out-of-range spells that ended)."""
        if len(obs.rows) == 0:
            return []
        events = self._stuck_round(obs.rows, obs.times_ms, obs.values)
        now = int(obs.times_ms.max())
        self._level_round(obs.rows, obs.times_ms, obs.values)
        if now >= self._next_drift_ms:
            self._next_drift_ms = now + DRIFT_EVERY_MS
            events += self._drift(now)
        events += self._out_of_range_ended(now)
        return events

    def _stuck_round(
        self, rows: npt.NDArray[np.intp], times: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> list[RiskEvent]:
        keep = self._eligible[rows] & np.isfinite(values) & (times >= self._last_ms[rows])
        if not keep.any():
            return []
        rows, times, values = rows[keep], times[keep], values[keep]
        order = np.argsort(rows, kind="stable")  # a round holds each sensor's readings in time order, nearly always
        r, t = rows[order], times[order]
        if ((r[1:] == r[:-1]) & (t[1:] < t[:-1])).any():
            order = np.lexsort((times, rows))
            r, t = rows[order], times[order]
        v = values[order]
        m = len(r)
        first = np.ones(m, bool)
        first[1:] = r[1:] != r[:-1]
        last = np.ones(m, bool)
        last[:-1] = first[1:]
        prev_t = np.where(first, self._last_ms[r], np.roll(t, 1))
        prev_v = np.where(first, self._last_value[r], np.roll(v, 1))
        fresh = prev_t == _NO_TIME
        gap = ~fresh & ((t - prev_t) > STUCK_GAP_MS)
        changed = fresh | gap | (v != prev_v)
        # Start of the run each reading belongs to: the latest change at or before it in its row, or the run
        # carried over from earlier rounds (the row's first reading always marks where to look).
        marks = np.where(changed | first, np.arange(m), -1)
        anchor = np.maximum.accumulate(marks)
        run_start = np.where(changed[anchor], t[anchor], self._run_start[r[anchor]])
        prev_start = np.where(first, self._run_start[r], np.roll(run_start, 1))
        ended = changed & ~fresh & ~gap
        moved = ~fresh & (v != prev_v)
        length = prev_t - prev_start
        threshold = self._stuck_threshold(r)
        warm = self._warm(r, t)
        learn = ended & (~warm | (length <= threshold))
        np.maximum.at(self._longest, r[learn], length[learn])
        np.add.at(self._changes, r[ended], 1)
        events: list[RiskEvent] = []
        unstuck = moved & self._stuck[r]
        if unstuck.any():
            where = np.flatnonzero(unstuck)[np.unique(r[unstuck], return_index=True)[1]]
            for i in where:
                row = int(r[i])
                self._stuck[row] = False
                events.append(self._event(row, _Condition("stuck", float(v[i]), None, ""), int(t[i]), False))
        lr, lt, lv, ls = r[last], t[last], v[last], run_start[last]
        self._last_ms[lr], self._last_value[lr], self._run_start[lr] = lt, lv, ls
        begun = self._first_ms[lr] == _NO_TIME
        self._first_ms[lr[begun]] = lt[begun]
        duration = lt - ls
        limit = self._stuck_threshold(lr)
        fire = ~self._stuck[lr] & self._warm(lr, lt) & (duration > limit)
        for i in np.flatnonzero(fire):
            row = int(lr[i])
            self._stuck[row] = True
            longest_h = float(self._longest[row]) / HOUR_MS
            source = (
                f"Anju sensor health: unchanged for {duration[i] / HOUR_MS:.1f} h, over {STUCK_FACTOR:g}× its longest "
                f"unchanged run so far ({longest_h:.1f} h) and at least {STUCK_MIN_MS / HOUR_MS:g} h"
            )
            condition = _Condition("stuck", float(lv[i]), None, source)
            events.append(self._event(row, condition, int(lt[i]), True))
        return events

    def _stuck_threshold(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.int64]:
        return np.maximum((STUCK_FACTOR * self._longest[rows]).astype(np.int64), STUCK_MIN_MS)

    def _warm(self, rows: npt.NDArray[np.intp], times: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        first = self._first_ms[rows]
        warm: npt.NDArray[np.bool_] = (
            (self._changes[rows] >= STUCK_WARM_CHANGES) & (first != _NO_TIME) & (times - first >= STUCK_WARM_MS)
        )
        return warm

    def _level_round(
        self, rows: npt.NDArray[np.intp], times: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
    ) -> None:
        """Move each grouped sensor's slow level toward the mean of its readings in the round (one step per round:
        rounds are far shorter than ``DRIFT_TAU_MS``)."""
        keep = self._grouped[rows] & np.isfinite(values)
        if not keep.any():
            return
        rows, times, values = rows[keep], times[keep], values[keep]
        unique, inverse, counts = np.unique(rows, return_inverse=True, return_counts=True)
        mean = np.bincount(inverse, values) / counts
        newest = np.full(len(unique), _NO_TIME, np.int64)
        np.maximum.at(newest, inverse, times)
        then = self._level_ms[unique]
        dt = np.where(then == _NO_TIME, 0, np.maximum(newest - then, 0))
        alpha = -np.expm1(-dt / DRIFT_TAU_MS)
        level = self._level[unique]
        self._level[unique] = np.where(np.isnan(level), mean, level + alpha * (mean - level))
        self._level_ms[unique] = np.maximum(then, newest)

    def _drift(self, now: int) -> list[RiskEvent]:
        """Compare every space's detectors heard from within ``DRIFT_FRESH_MS`` (all spaces at once), and every
        detector of a clean-air kind without such neighbours with its own first days."""
        rows, deviation = self._neighbour_deviation(now)
        alone = self._alone[now - self._level_ms[self._alone] <= DRIFT_FRESH_MS]
        rows = np.concatenate([rows, alone])
        deviation = np.concatenate([deviation, self._level[alone]])
        if not len(rows):
            return []
        new = self._learn_from[rows] == _NO_TIME
        self._learn_from[rows[new]] = now
        self._offset[rows[new]] = deviation[new]
        rows, deviation = rows[~new], deviation[~new]
        residual = deviation - self._offset[rows]
        since = now - self._learn_from[rows]
        learning = since < DRIFT_LEARN_MS
        weight = np.where(
            learning,
            DRIFT_EVERY_MS / np.maximum(since, DRIFT_EVERY_MS),
            np.where(self._drifting[rows], 0.0, -math.expm1(-DRIFT_EVERY_MS / DRIFT_OFFSET_TAU_MS)),
        )
        self._offset[rows] += weight * residual
        tolerance = self._tolerance[rows]
        fire = ~learning & ~self._drifting[rows] & (np.abs(residual) > tolerance)
        clear = self._drifting[rows] & (np.abs(residual) < tolerance / 2)
        self._drifting[rows[fire]] = True
        self._drifting[rows[clear]] = False
        self._follow_drift(rows, residual, tolerance, now)
        events: list[RiskEvent] = []
        for i in np.flatnonzero(fire | clear).tolist():
            row = int(rows[i])
            info = self._infos[row]
            assert info is not None
            source = ""
            if fire[i]:
                against = (
                    f"the other {info.kind.label_en} detectors of its space, normal offset {self._offset[row]:+.4g}"
                    if self._group_of[row] >= 0
                    else f"its own level over its first {DRIFT_LEARN_MS / DAY_MS:g} days ({self._offset[row]:.4g})"
                )
                source = (
                    f"Anju sensor health: {residual[i]:+.4g} {info.kind.unit} over {DRIFT_TAU_MS / HOUR_MS:g} h "
                    f"from {against}, tolerance {tolerance[i]:g}"
                )
            level = float(self._level[row])
            events.append(self._event(row, _Condition("drift", level, None, source), now, bool(fire[i])))
        return events

    def _follow_drift(
        self,
        rows: npt.NDArray[np.intp],
        residual: npt.NDArray[np.float64],
        tolerance: npt.NDArray[np.float64],
        now: int,
    ) -> None:
        """Move the drifting rows' corrections toward their upward drift, growing at most at the allowed rate over
        the reading time since they last moved, and falling at once; rows not drifting have none."""
        then = self._correction_ms[rows]
        elapsed = np.where(then == _NO_TIME, 0, np.maximum(now - then, 0))
        step = tolerance * (elapsed / DRIFT_CORRECTION_GROWTH_MS)
        wanted = np.minimum(np.maximum(residual, 0.0), self._correction[rows] + step)
        drifting = self._drifting[rows]
        self._correction[rows] = np.where(drifting, wanted, 0.0)
        self._correction_ms[rows] = np.where(drifting, now, _NO_TIME)
        self._correcting = bool(self._correction.any())

    def correction_note(self, sensor: str) -> str:
        """What the rules' events on ``sensor`` add to their source: the drift subtracted from its readings ("" if
        none)."""
        info = self._by_id.get(sensor)
        if info is None or self._correction[info.index] == 0.0:
            return ""
        amount = float(self._correction[info.index])
        return f"; judged net of the detector's upward drift of {amount:.4g} {info.kind.unit} (sensor health)"

    def corrected(self, obs: Observations) -> Observations:
        """``obs`` with each drifting detector's readings net of its correction (``obs`` itself when none is)."""
        if not self._correcting or len(obs.rows) == 0:
            return obs
        return replace(obs, values=obs.values - self._correction[obs.rows])

    def _neighbour_deviation(self, now: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Rows of grouped detectors heard from lately and how far each is from its space's median (from the
        other one, in a pair)."""
        members = self._members[now - self._level_ms[self._members] <= DRIFT_FRESH_MS]
        group = self._group_of[members]
        level = self._level[members]
        order = np.lexsort((level, group))
        members, group, level = members[order], group[order], level[order]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.empty(0, np.intp)
        counts = np.diff(np.r_[starts, len(group)])
        size = np.repeat(counts, counts)
        start = np.repeat(starts, counts)
        median = (level[start + (size - 1) // 2] + level[start + size // 2]) / 2
        compared = size >= 2
        # with two, the reference is the other one: x - other = 2 (x - their mean)
        deviation = np.where(size == 2, 2.0, 1.0) * (level - median)
        return members[compared], deviation[compared]

    # ---- out-of-range ---------------------------------------------------------------------------------------

    def observe_out_of_range(self, readings: Iterable[tuple[SensorInfo, int, float]]) -> list[RiskEvent]:
        """Values outside their kind's physical range, refused by validation: (sensor, time ms, value)."""
        events: list[RiskEvent] = []
        for info, time_ms, value in readings:
            events += self._out_of_range(info, time_ms, value, "refused by the hub's validation")
        return events

    def _out_of_range(self, info: SensorInfo, time_ms: int, value: float, how: str) -> list[RiskEvent]:
        row = info.index
        fired = row in self._out_of_range_ms
        self._out_of_range_ms[row] = max(time_ms, self._out_of_range_ms.get(row, time_ms))
        if fired:
            return []
        kind = info.kind
        limits = f"{kind.minimum:g}..{kind.maximum:g}"
        source = f"Anju sensor health: value outside the {kind.label_en} range {limits}, {how}"
        shown = value if math.isfinite(value) else 0.0
        return [self._event(row, _Condition("out-of-range", shown, None, source), time_ms, True)]

    def _out_of_range_ended(self, now: int) -> list[RiskEvent]:
        events: list[RiskEvent] = []
        for row, seen in list(self._out_of_range_ms.items()):
            if now - seen >= OUT_OF_RANGE_CLEAR_MS:
                del self._out_of_range_ms[row]
                info = self._infos[row]
                assert info is not None
                events.append(self._event(row, _Condition("out-of-range", 0.0, "", ""), now, False))
        return events

    # ---- the detectors' own reports -------------------------------------------------------------------------

    def observe_devices(self, gateway: str, time_ms: int, devices: Sequence[DeviceStatus]) -> list[RiskEvent]:
        """A gateway's health report (gateway clock ``time_ms``): every detector of ``gateway`` it does not list
        is well. Detectors the registry does not have on this gateway are ignored (returned by ``unknown``)."""
        listed = {d.sensor: d for d in devices}
        events: list[RiskEvent] = []
        for info in self._on_gateway.get(gateway, ()):
            device = listed.get(info.id)
            wanted = _device_conditions(device) if device is not None else {}
            for rule in _DEVICE_RULES:
                key = (info.id, rule)
                if rule in wanted and key not in self._device_firing:
                    self._device_firing.add(key)
                    events.append(self._event(info.index, wanted[rule], time_ms, True))
                elif rule not in wanted and key in self._device_firing:
                    self._device_firing.discard(key)
                    value, unit = (float(device.battery_pct), "%") if device and rule == "low-battery" else (0.0, "")
                    events.append(self._event(info.index, _Condition(rule, value, unit, ""), time_ms, False))
            garbage = device.garbage if device is not None else 0
            before = self._garbage.get(info.id, 0)
            self._garbage[info.id] = garbage
            if garbage > before or (garbage > 0 and garbage < before):
                events += self._out_of_range(info, time_ms, math.nan, f"{garbage} samples refused by the gateway")
        events += self._out_of_range_ended(time_ms)
        return events

    def unknown(self, gateway: str, devices: Sequence[DeviceStatus]) -> list[str]:
        """Ids in a report that are not detectors of ``gateway`` in the registry (counted by the caller)."""
        return [d.sensor for d in devices if (info := self._by_id.get(d.sensor)) is None or info.gateway != gateway]

    # ---- events and state -----------------------------------------------------------------------------------

    def _event(self, row: int, condition: _Condition, time_ms: int, firing: bool) -> RiskEvent:
        info = self._infos[row]
        assert info is not None
        zh, en = HEALTH_RULES[condition.rule]
        value = condition.value if math.isfinite(condition.value) else 0.0
        return RiskEvent(
            key=f"{self.community}/{info.id}/health/{condition.rule}",
            maintenance=True,
            community=self.community,
            grid=info.grid,
            sensor=info.id,
            kind=info.kind.name,
            location_zh=info.location,
            rule=condition.rule,
            rule_zh=zh,
            grade=Grade.IV,
            value=value,
            unit=info.kind.unit if condition.unit is None else condition.unit,
            time_ms=time_ms,
            status="firing" if firing else "cleared",
            source=condition.source or f"Anju sensor health: {en}",
        )

    def to_state(self) -> dict[str, Any]:
        """Everything learned and every open condition, by sensor id (JSON)."""
        sensors: dict[str, list[Any]] = {}
        for info in self._by_id.values():
            r = info.index
            if self._last_ms[r] == _NO_TIME and self._level_ms[r] == _NO_TIME:
                continue
            sensors[info.id] = [
                _num(self._last_value[r]),
                int(self._last_ms[r]),
                int(self._run_start[r]),
                int(self._first_ms[r]),
                int(self._changes[r]),
                int(self._longest[r]),
                bool(self._stuck[r]),
                _num(self._level[r]),
                int(self._level_ms[r]),
                float(self._offset[r]),
                int(self._learn_from[r]),
                bool(self._drifting[r]),
                float(self._correction[r]),
                int(self._correction_ms[r]),
            ]
        infos = self._infos
        return {
            "version": _STATE_VERSION,
            "community": self.community,
            "sensors": sensors,
            "next_drift_ms": int(self._next_drift_ms),
            "out_of_range": {infos[r].id: t for r, t in self._out_of_range_ms.items() if infos[r] is not None},  # type: ignore[union-attr]
            "garbage": dict(self._garbage),
            "device_firing": sorted([sensor, rule] for sensor, rule in self._device_firing),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from ``to_state``'s output; sensors no longer registered are dropped. Raises ValueError,
        TypeError or KeyError on a state of another version or community, or a malformed one."""
        if state.get("version") != _STATE_VERSION or state.get("community") != self.community:
            raise ValueError(f"health state is version {state.get('version')!r} of {state.get('community')!r}")
        for sensor, fields in state["sensors"].items():
            info = self._by_id.get(sensor)
            if info is None:
                continue
            if len(fields) not in (12, 14):  # 12: saved before the drift correction
                raise ValueError(f"health state of {sensor!r} has {len(fields)} fields, not 14")
            r = info.index
            self._last_value[r] = _float(fields[0])
            self._last_ms[r], self._run_start[r], self._first_ms[r] = int(fields[1]), int(fields[2]), int(fields[3])
            self._changes[r], self._longest[r], self._stuck[r] = int(fields[4]), int(fields[5]), bool(fields[6])
            self._level[r], self._level_ms[r] = _float(fields[7]), int(fields[8])
            self._offset[r], self._learn_from[r] = float(fields[9]), int(fields[10])
            self._drifting[r] = bool(fields[11])
            if len(fields) == 14:
                self._correction[r], self._correction_ms[r] = float(fields[12]), int(fields[13])
        self._correcting = bool(self._correction.any())
        self._next_drift_ms = int(state["next_drift_ms"])
        self._out_of_range_ms = {
            self._by_id[s].index: int(t) for s, t in state["out_of_range"].items() if s in self._by_id
        }
        self._garbage = {s: int(n) for s, n in state["garbage"].items() if s in self._by_id}
        self._device_firing = {(str(s), str(rule)) for s, rule in state["device_firing"] if s in self._by_id}


def _device_conditions(device: DeviceStatus) -> dict[str, _Condition]:
    wanted: dict[str, _Condition] = {}
    low_flag = bool(device.faults & FAULT_LOW_BATTERY)
    tamper = bool(device.faults & FAULT_TAMPER)
    if low_flag or device.battery_pct <= LOW_BATTERY_PCT:
        why = "its low-battery flag" if low_flag else f"battery at most {LOW_BATTERY_PCT} %"
        wanted["low-battery"] = _Condition("low-battery", float(device.battery_pct), "%", f"detector header: {why}")
    if tamper:
        wanted["tamper"] = _Condition("tamper", 1.0, "", "detector header: tamper flag (GB/T 45839 status 3)")
    if device.status == Status.FAULT and not (low_flag or tamper):
        wanted["device-fault"] = _Condition("device-fault", 3.0, "", "detector header: GB/T 45839 status 3 fault")
    if device.status == Status.SHIELDED:
        wanted["shielded"] = _Condition("shielded", 4.0, "", "detector header: GB/T 45839 status 4 shielded")
    return wanted


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)
