"""Set-point rules from the standards (protocol/kinds.py, ../shared/SENSORS.md), streaming and per sensor.

Each sensor has one condition key (``{community}/{sensor}/{kind}/level``): the grade of the most severe
set point currently crossed. An event is emitted only on a change — a worse set point crossed (firing, the
alerts package upgrades the open alert), or the value falling back past the *clear* level of the active
set point (hysteresis, so a value hovering at 25 %LEL does not page every second). Falling past one clear
level while still above a lower set point re-states the lower level; falling past the last one clears.

Streaming: a reading older than the newest already judged for its sensor (a replay after a gateway
restart) is stored but not judged again, so decisions at time t use only data up to t.

Vectorised across sensors (it must keep up with the hub's ingest rate): per sensor row (``SensorInfo.index``)
the detector keeps the newest time seen, whether a condition is active, and the *quiet band* of its kind — the
values that cross no set point. A round's readings are screened with numpy; only the readings of sensors with a
value outside the band or an active condition go through the per-reading logic above, in time order. Every other
reading only moves its sensor's newest time. Same decisions as judging every reading, at ~0.1 µs a reading.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from alerts.model import EventStatus, Grade, RiskEvent
from hub.ingest.registry import SensorInfo
from protocol import Reading
from protocol.kinds import SetPoint

__all__ = ["ThresholdDetector"]


@dataclass(slots=True)
class _SensorState:
    last_time_ms: int = -1
    active: SetPoint | None = None


def _worst_crossed(set_points: Iterable[SetPoint], value: float) -> SetPoint | None:
    crossed = [point for point in set_points if point.crossed(value)]
    return min(crossed, key=lambda point: point.grade) if crossed else None


@dataclass(frozen=True, slots=True)
class Observations:
    """Readings to judge as columns: reading i of sensor ``infos[i]`` (registry row ``rows[i]``) is ``values[i]`` in
    its kind's unit at ``times_ms[i]`` (Unix ms)."""

    rows: npt.NDArray[np.intp]
    times_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    infos: list[SensorInfo]

    @classmethod
    def empty(cls) -> "Observations":
        return cls(np.empty(0, np.intp), np.empty(0, np.int64), np.empty(0, np.float64), [])

    @classmethod
    def of(cls, readings: Sequence[tuple[Reading, SensorInfo]]) -> "Observations":
        n = len(readings)
        return cls(
            np.fromiter((info.index for _, info in readings), np.intp, n),
            np.fromiter((reading.time_ms for reading, _ in readings), np.int64, n),
            np.fromiter((reading.value for reading, _ in readings), np.float64, n),
            [info for _, info in readings],
        )


def _quiet_band(info: SensorInfo) -> tuple[float, float]:
    """(low, high): a value strictly between them crosses none of the kind's set points."""
    below = [point.value for point in info.kind.set_points if not point.above]
    above = [point.value for point in info.kind.set_points if point.above]
    return (max(below) if below else -np.inf, min(above) if above else np.inf)


class ThresholdDetector:
    def __init__(self, *, community: str, community_name: str = "") -> None:
        self.community = community
        self.community_name = community_name
        self._states: dict[str, _SensorState] = {}
        self._newest = np.full(0, np.iinfo(np.int64).min, np.int64)
        self._low = np.full(0, np.nan)
        self._high = np.full(0, np.nan)
        self._active = np.zeros(0, bool)

    def _rows(self, infos: Sequence[SensorInfo], rows: npt.NDArray[np.intp]) -> None:
        """Grow the per-sensor arrays to hold ``rows`` and fill the quiet band of sensors seen the first time."""
        size = int(rows.max()) + 1
        if size > len(self._newest):
            grow = size - len(self._newest)
            self._newest = np.concatenate((self._newest, np.full(grow, np.iinfo(np.int64).min, np.int64)))
            self._low = np.concatenate((self._low, np.full(grow, np.nan)))
            self._high = np.concatenate((self._high, np.full(grow, np.nan)))
            self._active = np.concatenate((self._active, np.zeros(grow, bool)))
        for at in np.flatnonzero(np.isnan(self._low[rows])).tolist():
            info = infos[at]
            self._low[info.index], self._high[info.index] = _quiet_band(info)

    def observe(self, readings: Sequence[tuple[Reading, SensorInfo]]) -> list[RiskEvent]:
        """Judge readings (any order across sensors; sorted by time per sensor here) and return changes."""
        return self.observe_columns(Observations.of(readings))

    def observe_round(self, seen: Observations) -> list[RiskEvent]:
        """``observe_columns``, under the name the hub's ``Ingest`` calls."""
        return self.observe_columns(seen)

    def observe_columns(self, seen: Observations) -> list[RiskEvent]:
        """``observe`` for readings as columns (the ingest path: no object per reading that is not judged)."""
        rows = seen.rows
        if not len(rows):
            return []
        if rows.min() < 0:
            raise ValueError("readings of a sensor without a registry row (SensorInfo.index) cannot be judged")
        self._rows(seen.infos, rows)
        values = seen.values
        loud = ~((values > self._low[rows]) & (values < self._high[rows])) | self._active[rows]
        events: list[RiskEvent] = []
        if loud.any():
            judged = np.flatnonzero(np.isin(rows, rows[loud])).tolist()  # every reading of those sensors, for clears
            infos = [seen.infos[i] for i in judged]
            pairs = [
                (Reading(info.id, time_ms, value, info.kind.unit), info)
                for info, time_ms, value in zip(
                    infos, seen.times_ms[judged].tolist(), values[judged].tolist(), strict=True
                )
            ]
            events = self._judge(pairs)
        np.maximum.at(self._newest, rows, seen.times_ms)
        return events

    def _judge(self, readings: Iterable[tuple[Reading, SensorInfo]]) -> list[RiskEvent]:
        events: list[RiskEvent] = []
        for reading, info in sorted(readings, key=lambda pair: pair[0].time_ms):
            state = self._states.setdefault(info.id, _SensorState())
            newest = max(state.last_time_ms, int(self._newest[info.index]))
            if reading.time_ms <= newest:
                continue
            state.last_time_ms = reading.time_ms
            event = self._step(state, reading, info)
            self._active[info.index] = state.active is not None
            if event is not None:
                events.append(event)
        return events

    def _step(self, state: _SensorState, reading: Reading, info: SensorInfo) -> RiskEvent | None:
        worst = _worst_crossed(info.kind.set_points, reading.value)
        active = state.active
        if active is None:
            if worst is None:
                return None
            state.active = worst
            return self._event(reading, info, worst, "firing")
        if worst is not None and worst.grade < active.grade:
            state.active = worst
            return self._event(reading, info, worst, "firing")
        if not active.cleared(reading.value):
            return None
        lower = _worst_crossed((p for p in info.kind.set_points if p.grade > active.grade), reading.value)
        state.active = lower
        if lower is None:
            return self._event(reading, info, active, "cleared")
        return self._event(reading, info, lower, "firing")

    def _event(self, reading: Reading, info: SensorInfo, point: SetPoint, status: EventStatus) -> RiskEvent:
        return RiskEvent(
            key=f"{self.community}/{info.id}/{info.kind.name}/level",
            community=self.community,
            grid=info.grid,
            sensor=info.id,
            kind=info.kind.name,
            location_zh=f"{self.community_name} {info.location}".strip(),
            rule=point.name,
            grade=Grade(point.grade),
            value=reading.value,
            unit=reading.unit,
            time_ms=reading.time_ms,
            status=status,
            source=point.source,
            threshold=point.value,
        )
