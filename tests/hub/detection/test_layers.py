"""DetectionLayers: the rules judge a drifting detector net of the drift the health layer tracks (issue 5)."""

import numpy as np

from alerts.model import RiskEvent
from hub.detection.anomaly_watch import AnomalyWatch
from hub.detection.health import SensorHealth
from hub.detection.layers import DetectionLayers
from hub.detection.observations import Observations
from hub.detection.rules import RuleEngine
from hub.detection.rules.model import default_rules
from hub.ingest.registry import SensorInfo
from protocol.kinds import KINDS

T0 = 1_790_000_000_000
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


def layers(co: SensorInfo) -> DetectionLayers:
    return DetectionLayers(
        rules=RuleEngine(community="c", ruleset=default_rules(), sensors=[co]),
        anomaly=AnomalyWatch(community="c", scored_rows=np.zeros(1, bool)),
        health=SensorHealth(community="c", community_name="", sensors=[co], spaces={}),
    )


def judge(detection: DetectionLayers, co: SensorInfo, minutes: np.ndarray, values: np.ndarray) -> list[RiskEvent]:
    """One reading a minute, a round of an hour's readings at a time."""
    events: list[RiskEvent] = []
    for start in range(0, len(minutes), 60):
        m, v = minutes[start : start + 60], values[start : start + 60]
        seen = Observations(np.zeros(len(m), np.intp), T0 + m.astype(np.int64) * MINUTE_MS, v, [co] * len(m))
        events += detection.observe_round(seen)
    return events


def test_an_ageing_co_cell_is_maintenance_not_an_alarm_and_a_real_exposure_still_is() -> None:
    """The quiet month's ageing cell (2 ppm a day) reads 32 ppm on day 15 and 42 on day 20; before the correction
    it paged grade III (EN 50291 dose from 30 ppm) on day ~15. A real 100 ppm on day 20 is still an alarm."""
    co = SensorInfo("co-1", "gw-1", KINDS["co"], "1栋 101 厨房", "grid-1", None, 0)
    detection = layers(co)
    rng = np.random.default_rng(21)
    minutes = np.arange(20 * 24 * 60)
    drift = 2.0 + minutes / 1440 * 2.0
    values = np.maximum(0.0, np.round(drift + rng.normal(0, 0.6, len(minutes))))
    quiet = judge(detection, co, minutes, values)
    firing = {(e.rule, e.grade.name) for e in quiet if e.status == "firing"}
    assert firing == {("drift", "IV")}, firing
    leak = np.arange(minutes[-1] + 1, minutes[-1] + 1 + 90)
    real = judge(detection, co, leak, np.round(2.0 + leak / 1440 * 2.0 + 100.0))
    [alarm] = [e for e in real if e.status == "firing" and e.grade.name == "III"]
    assert alarm.rule_zh == "一氧化碳累积暴露报警"
    assert (alarm.time_ms - T0) / MINUTE_MS - leak[0] <= 40, "EN 50291: 100 ppm alarms within 10-40 min"
    assert "upward drift of" in alarm.source
