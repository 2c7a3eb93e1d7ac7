"""Set-point rules from the standards (protocol/kinds.py, ../shared/SENSORS.md), streaming and per sensor.

Each sensor has one condition key (``{community}/{sensor}/{kind}/level``): the grade of the most severe
set point currently crossed. An event is emitted only on a change — a worse set point crossed (firing, the
alerts package upgrades the open alert), or the value falling back past the *clear* level of the active
set point (hysteresis, so a value hovering at 25 %LEL does not page every second). Falling past one clear
level while still above a lower set point re-states the lower level; falling past the last one clears.

Streaming: a reading older than the newest already judged for its sensor (a replay after a gateway
restart) is stored but not judged again, so decisions at time t use only data up to t.
"""

from collections.abc import Iterable
from dataclasses import dataclass

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


class ThresholdDetector:
    def __init__(self, *, community: str, community_name: str = "") -> None:
        self.community = community
        self.community_name = community_name
        self._states: dict[str, _SensorState] = {}

    def observe(self, readings: Iterable[tuple[Reading, SensorInfo]]) -> list[RiskEvent]:
        """Judge readings (any order across sensors; sorted by time per sensor here) and return changes."""
        events: list[RiskEvent] = []
        for reading, info in sorted(readings, key=lambda pair: pair[0].time_ms):
            state = self._states.setdefault(info.id, _SensorState())
            if reading.time_ms <= state.last_time_ms:
                continue
            state.last_time_ms = reading.time_ms
            event = self._step(state, reading, info)
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
