"""The hub's three detection layers over one deployment, judging a round in one order: the standards' rules, the
streaming anomaly watch, the sensor health (issue 5). ``hub serve``'s ingest and ``bench detection`` both judge
through ``observe_round``, so the bench measures what the hub runs."""

from dataclasses import dataclass, replace

from alerts.model import RiskEvent
from hub.detection.anomaly_watch import AnomalyWatch
from hub.detection.health import SensorHealth
from hub.detection.observations import Observations
from hub.detection.rules import RuleEngine

__all__ = ["DetectionLayers"]


@dataclass(frozen=True, slots=True)
class DetectionLayers:
    rules: RuleEngine
    anomaly: AnomalyWatch
    health: SensorHealth

    def observe_round(self, seen: Observations) -> list[RiskEvent]:
        """Every layer's events for an ingest round's judged readings (the gateways' device reports and refused
        out-of-range values go to ``health`` directly, as the round is prepared). The rules judge drifting
        detectors' readings net of the drift the health layer tracks, and their events say by how much."""
        corrected = self.health.corrected(seen)
        events = self.rules.observe_round(corrected)
        if corrected is not seen:
            events = [self._say_corrected(event) for event in events]
        events += self.anomaly.observe_round(seen)
        events += self.health.observe_round(seen)
        return events

    def _say_corrected(self, event: RiskEvent) -> RiskEvent:
        note = self.health.correction_note(event.sensor)
        return replace(event, source=event.source + note) if note else event
