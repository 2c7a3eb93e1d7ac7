"""The anomaly detector on the hub's ingest path: each round scored, high scores turned into grade IV risk events.

``AnomalyDetector.score`` is called on the round's columns exactly as ``anju-hub score`` calls it on a CSV; this
module only decides what a grid manager or property company hears about:

- a reading scoring ``fire_at`` or more opens an ``anomaly`` condition for its sensor (one ``firing`` event, grade IV
  — SENSORS.md: "pre-warning, slow trend" — the alerts pipeline routes and escalates it);
- a later reading scoring ``fire_at`` again on an open condition says nothing new (the alert is open);
- the condition clears once its sensor has gone ``clear_after_ms`` of device time without a reading scoring
  ``clear_at`` or more (one ``cleared`` event).

A cumulative meter (``CUMULATIVE_KINDS``: a water meter's register) is scored on its use, not its register: the
increase per hour over steps of at least ``USE_STEP_MS`` (the readings in between are not scored). Its register only
ever grows, so scored as it stands every night without use would look like a series gone flat and every morning
like a level shift (bench detection: ~100 false grade IV a meter a month).

Its state (the detector's and the open conditions) is saved to one ``.npz`` file (``save``; the runtime does it
every minute and at stop) and loaded at start, so a hub restart neither forgets what each sensor's normal is nor
re-learns it with a burst of false alarms. A file that cannot be read is set aside (renamed ``.bad``) and the
detector starts fresh, with a warning: learning again costs minutes of warm-up, refusing to start would cost the
whole hub.
"""

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from alerts.model import Grade, RiskEvent
from hub.detection.anomaly import AnomalyConfig, AnomalyDetector, Reason, Scores, reason_text
from hub.detection.observations import Observations
from hub.files import replacing, set_aside
from hub.ingest.registry import SensorInfo

__all__ = ["ANOMALY_KINDS", "CUMULATIVE_KINDS", "AnomalyWatch", "rows_of_kinds"]

log = logging.getLogger("anju.hub.detection")

SOURCE = "Anju 异常检测 anomaly detector [D]"
ANOMALY_KINDS = frozenset(
    {
        "temperature",
        "cable-temperature",
        "residual-current",
        "pressure",
        "water-meter",
        "water-depth",
        "structural-tilt",
    }
)
"""Kinds scored by default: continuous measurements whose usual pattern carries information (a pump's pressure, a
circuit's leakage, an elder's water use, a slowly tilting wall). Not scored: on/off kinds (doors, buttons, lift
events, a manhole's open contact), nor gas, smoke and CO, whose usual value is nothing and whose departures the
standards' set points already judge. [D]"""
MEANINGFUL: dict[str, float] = {
    "water-depth": 0.02,
    "temperature": 1.0,
    "cable-temperature": 3.0,
    "residual-current": 0.02,
    "pressure": 10_000.0,
    "structural-tilt": 0.0002,
}
"""Per kind, in its unit, the least spike or level shift worth a person's attention however unusual it is for its
sensor [D]: well under the kind's first set point (2 cm of water against the 5 cm grade IV; 20 mA against the 100 mA
between a healthy leakage and its alarm; 10 kPa of a fire main). A dry basement reading 7 mm after weeks of 0-2 mm is
rare for that sensor, and nobody should be sent to look (bench detection: 206 of the quiet month's grade IV)."""
CUMULATIVE_KINDS = frozenset({"water-meter"})
USE_STEP_MS = 15 * 60_000
"""A meter's use is scored per quarter hour at the finest: per-minute use of one flat is bursts and zeros."""
_NEVER = np.iinfo(np.int64).min
_HOUR_MS = 3_600_000


class AnomalyWatch:
    """Scores rounds with one ``AnomalyDetector`` and keeps, per sensor row, whether an anomaly condition is open."""

    def __init__(
        self,
        *,
        community: str,
        community_name: str = "",
        state_path: Path | None = None,
        config: AnomalyConfig | None = None,
        fire_at: float = 0.8,
        clear_at: float = 0.3,
        clear_after_ms: int = 3_600_000,
        scored_rows: npt.NDArray[np.bool_] | None = None,
        cumulative_rows: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """``fire_at`` / ``clear_at``: scores in [0, 1]; ``clear_after_ms``: device-time ms without a score of
        ``clear_at`` before an open condition clears. ``state_path``: where ``save`` writes and the start reads.
        ``scored_rows``: which registry rows are scored (``rows_of_kinds``); None: every sensor. ``cumulative_rows``:
        which are cumulative meters, scored on their use (``rows_of_kinds(..., CUMULATIVE_KINDS)``)."""
        if not 0.0 < clear_at < fire_at <= 1.0:
            raise ValueError(f"need 0 < clear_at < fire_at <= 1, got clear_at={clear_at}, fire_at={fire_at}")
        if clear_after_ms <= 0:
            raise ValueError(f"clear_after_ms must be > 0, got {clear_after_ms}")
        self.community = community
        self.community_name = community_name
        self.state_path = state_path
        self.fire_at = fire_at
        self.clear_at = clear_at
        self.clear_after_ms = clear_after_ms
        self.scored_rows = scored_rows
        self.cumulative_rows = cumulative_rows
        self.detector = AnomalyDetector(config)
        self.open = np.zeros(0, bool)
        self.last_high_ms = np.zeros(0, np.int64)
        self.total = np.zeros(0)
        """A cumulative meter's register at the start of its current use step (NaN: none yet)."""
        self.total_ms = np.zeros(0, np.int64)
        if state_path is not None and state_path.exists():
            self._load(state_path, config)

    # -- state ------------------------------------------------------------------------------------------------

    def _load(self, path: Path, config: AnomalyConfig | None) -> None:
        try:
            with np.load(path) as saved:
                arrays = {name: saved[name] for name in saved.files}
            self.open = arrays.pop("watch_open").astype(bool)
            self.last_high_ms = arrays.pop("watch_last_high_ms").astype(np.int64)
            self.total = arrays.pop("watch_total", np.full(len(self.open), np.nan)).astype(np.float64)
            self.total_ms = arrays.pop("watch_total_ms", np.full(len(self.open), _NEVER)).astype(np.int64)
            if not len(self.open) == len(self.last_high_ms) == len(self.total) == len(self.total_ms):
                raise ValueError("anomaly watch arrays of different lengths")
            self.detector = AnomalyDetector.restore(arrays, config)
        except (OSError, ValueError, KeyError) as exc:
            set_aside(path, exc, "anomaly state", log)
            self.detector = AnomalyDetector(config)
            self.open = np.zeros(0, bool)
            self.last_high_ms = np.zeros(0, np.int64)
            self.total = np.zeros(0)
            self.total_ms = np.zeros(0, np.int64)
            return
        log.info("anomaly state loaded from %s: %d sensors, %d open", path, len(self.open), int(self.open.sum()))

    def snapshot(self) -> dict[str, npt.NDArray[np.generic]]:
        """A copy of the whole state (cheap; take it on the event loop, write it in a thread with ``write``)."""
        state = self.detector.state()
        state["watch_open"] = self.open.copy()
        state["watch_last_high_ms"] = self.last_high_ms.copy()
        state["watch_total"] = self.total.copy()
        state["watch_total_ms"] = self.total_ms.copy()
        return state

    def write(self, state: dict[str, npt.NDArray[np.generic]]) -> None:
        """Write ``state`` to ``state_path`` atomically (temporary file, fsync, rename)."""
        if self.state_path is None:
            return
        with replacing(self.state_path, "wb") as f:
            np.savez(f, **state)  # type: ignore[arg-type]

    def save(self) -> None:
        self.write(self.snapshot())

    # -- the ingest path --------------------------------------------------------------------------------------

    def _grow(self, size: int) -> None:
        if size > len(self.open):
            extra = size - len(self.open)
            self.open = np.concatenate([self.open, np.zeros(extra, bool)])
            self.last_high_ms = np.concatenate([self.last_high_ms, np.full(extra, _NEVER, np.int64)])
            self.total = np.concatenate([self.total, np.full(extra, np.nan)])
            self.total_ms = np.concatenate([self.total_ms, np.full(extra, _NEVER, np.int64)])

    def observe_round(self, seen: Observations) -> list[RiskEvent]:
        """``observe_columns``, under the name the hub's ``Ingest`` calls."""
        return self.observe_columns(seen)

    def observe_columns(self, seen: Observations) -> list[RiskEvent]:
        """Score a round (any order; per sensor in time order) and return the conditions opened and cleared."""
        if self.scored_rows is not None and len(seen.rows):
            wanted = self.scored_rows[seen.rows]
            if not wanted.all():
                at = np.flatnonzero(wanted)
                infos = [seen.infos[i] for i in at.tolist()]
                seen = Observations(seen.rows[at], seen.times_ms[at], seen.values[at], infos)
        rows = seen.rows
        if not len(rows):
            return []
        self._grow(int(rows.max()) + 1)
        if self.cumulative_rows is not None and self.cumulative_rows[rows].any():
            seen, scored = self._use_of_meters(seen)
            rows = seen.rows
            if not len(rows):
                return []
        else:
            scored = seen.values
        scores = self.detector.score(rows, seen.times_ms, scored)
        high = scores.score >= self.clear_at
        if high.any():
            np.maximum.at(self.last_high_ms, rows[high], seen.times_ms[high])
        events: list[RiskEvent] = []
        for i in np.flatnonzero(scores.score >= self.fire_at).tolist():
            row = int(rows[i])
            if not self.open[row] and self._meaningful(seen.infos[i], scores, i, float(scored[i])):
                self.open[row] = True
                events.append(self._event(seen.infos[i], scores, i, float(seen.values[i]), int(seen.times_ms[i])))
        candidates = np.unique(rows[self.open[rows]])
        if len(candidates):
            newest = np.full(int(rows.max()) + 1, _NEVER, np.int64)
            np.maximum.at(newest, rows, seen.times_ms)
            quiet = candidates[newest[candidates] - self.last_high_ms[candidates] >= self.clear_after_ms]
            for row in quiet.tolist():
                self.open[row] = False
                last = int(np.flatnonzero(rows == row)[np.argmax(seen.times_ms[rows == row])])
                events.append(
                    self._event(seen.infos[last], scores, last, float(seen.values[last]), int(seen.times_ms[last]))
                )
        return events

    @staticmethod
    def _meaningful(info: SensorInfo, scores: Scores, i: int, value: float) -> bool:
        """False for a spike, shift or day's departure (its mean since midnight against the usual) smaller than its
        kind's ``MEANINGFUL`` departure."""
        if scores.reason[i] == Reason.ACTIVITY and scores.seen is not None:
            value = float(scores.seen[i])
        elif scores.reason[i] not in (Reason.SPIKE, Reason.SHIFT):
            return True
        return abs(value - float(scores.expected[i])) >= MEANINGFUL.get(info.kind.name, 0.0)

    def _use_of_meters(self, seen: Observations) -> tuple[Observations, npt.NDArray[np.float64]]:
        """The round without the meter readings inside a use step, and the values to score: for each meter reading
        that ends a step of at least ``USE_STEP_MS``, the use since the step began in unit per hour (m³/h)."""
        assert self.cumulative_rows is not None
        rows, times, values = seen.rows, seen.times_ms, seen.values
        keep = ~self.cumulative_rows[rows]
        scored = values.copy()
        order = np.flatnonzero(~keep)
        order = order[np.argsort(times[order], kind="stable")]
        for i in order.tolist():  # a meter reads about once a minute: few per round
            row, time_ms, value = int(rows[i]), int(times[i]), float(values[i])
            start, start_ms = float(self.total[row]), int(self.total_ms[row])
            if not math.isfinite(value) or (start_ms != _NEVER and time_ms <= start_ms):
                continue  # not a number, or late: not scored
            if math.isnan(start) or value < start:  # its first reading, or the register went back (a new meter)
                self.total[row], self.total_ms[row] = value, time_ms
            elif time_ms - start_ms >= USE_STEP_MS:
                scored[i] = (value - start) / (time_ms - start_ms) * _HOUR_MS
                keep[i] = True
                self.total[row], self.total_ms[row] = value, time_ms
        at = np.flatnonzero(keep)
        kept = Observations(rows[at], times[at], values[at], [seen.infos[i] for i in at.tolist()])
        return kept, scored[at]

    def _event(self, info: SensorInfo, scores: Scores, i: int, value: float, time_ms: int) -> RiskEvent:
        firing = bool(self.open[info.index])
        reason = Reason(int(scores.reason[i])) if firing else Reason.NONE
        return RiskEvent(
            key=f"{self.community}/{info.id}/{info.kind.name}/anomaly",
            community=self.community,
            grid=info.grid,
            sensor=info.id,
            kind=info.kind.name,
            location_zh=f"{self.community_name} {info.location}".strip(),
            rule=f"anomaly-{reason.name.lower().replace('_', '-')}" if firing else "anomaly",
            grade=Grade.IV,
            value=value,
            unit=info.kind.unit,
            time_ms=time_ms,
            status="firing" if firing else "cleared",
            source=SOURCE,
            threshold=None,
            rule_zh=f"异常检测：{reason_text(reason)[0]}" if firing else "异常检测",
        )


def rows_of_kinds(sensors: Iterable[SensorInfo], kinds: Iterable[str] = ANOMALY_KINDS) -> npt.NDArray[np.bool_]:
    """A mask over registry rows: True where the sensor's kind is one of ``kinds``."""
    chosen = frozenset(kinds)
    infos = list(sensors)
    mask = np.zeros(max((info.index for info in infos), default=-1) + 1, bool)
    for info in infos:
        mask[info.index] = info.kind.name in chosen
    return mask
