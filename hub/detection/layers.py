"""The hub's three detection layers over one deployment, judging a round in one order: the standards' rules, the
streaming anomaly watch, the sensor health (issue 5). ``hub serve``'s ingest and ``bench detection`` both judge
through ``observe_round``, so the bench measures what the hub runs."""

from dataclasses import dataclass

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
        out-of-range values go to ``health`` directly, as the round is prepared)."""
        events = self.rules.observe_round(seen)
        events += self.anomaly.observe_round(seen)
        events += self.health.observe_round(seen)
        return events
