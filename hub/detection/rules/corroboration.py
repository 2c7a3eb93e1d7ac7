"""Corroboration: several sensors in one place agreeing raise confidence and grade.

Two smoke detectors in the same room are far less likely to be one dusty chamber; smoke with heat, and with
CO rising, is a fire (smouldering fires show CO first, flaming ones heat first, so the kinds may fire in any
order); gas with CO is a leak near a flame. Smoke detectors of one building alarming in different spaces are
smoke spreading through it (GB 50116's two independent alarm signals). Each pattern (``RuleSet.corroboration``)
fires while it holds in a space (or a building, ``scope: building``) and clears when it no longer does; its key
is ``{community}/{space or building}/corroboration/{pattern}``. Its grade is capped at II like all sensor
evidence (SENSORS.md "Grades": grade I needs a person).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hub.detection.rules.model import GRADE_NUMBERS, Corroboration

__all__ = ["PlaceWatch", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A pattern that started or stopped holding in a place (a space or a building); ``sensors`` are the ones that
    made it hold."""

    pattern: Corroboration
    place: str
    holds: bool
    sensors: tuple[str, ...]


class PlaceWatch:
    """Which sensors of each place have a firing condition, and which patterns hold in which place (the engine keeps
    one watch over spaces and one over buildings)."""

    def __init__(
        self, patterns: Iterable[Corroboration], kinds: Mapping[str, str], spaces: Mapping[str, str] | None = None
    ) -> None:
        """``kinds``: sensor id → kind of every sensor that has a place (a space, or for building patterns a
        building); ``spaces``: sensor id → space, for patterns whose sensors must be in two spaces (a sensor
        without a space counts as a place of its own)."""
        self.patterns = tuple(patterns)
        self._kinds = dict(kinds)
        self._spaces = dict(spaces or {})
        self._worst: dict[str, dict[str, int]] = {}
        """place → sensor → the most severe grade number among its firing conditions."""
        self.holding: set[tuple[str, str]] = set()
        """(place, pattern id) of the patterns that hold (and whose firing event was emitted)."""

    def update(self, place: str, sensor: str, worst_grade: int | None) -> list[Verdict]:
        """Record that ``sensor`` now has ``worst_grade`` firing (None: nothing firing); return what changed."""
        sensors = self._worst.setdefault(place, {})
        if worst_grade is None:
            sensors.pop(sensor, None)
        else:
            sensors[sensor] = worst_grade
        verdicts = []
        kind = self._kinds.get(sensor)
        for pattern in self.patterns:
            if kind not in pattern.kinds:
                continue
            contributors = self._contributors(pattern, sensors)
            holds = contributors is not None
            key = (place, pattern.id)
            if holds != (key in self.holding):
                (self.holding.add if holds else self.holding.discard)(key)
                verdicts.append(Verdict(pattern, place, holds, contributors or ()))
        return verdicts

    def _contributors(self, pattern: Corroboration, sensors: Mapping[str, int]) -> tuple[str, ...] | None:
        limit = GRADE_NUMBERS[pattern.min_grade]
        chosen: list[str] = []
        for kind, needed in pattern.kinds.items():
            found = sorted(s for s, grade in sensors.items() if grade <= limit and self._kinds.get(s) == kind)
            if len(found) < needed:
                return None
            chosen.extend(found)
        if pattern.scope == "building" and len({self._spaces.get(s) or s for s in chosen}) < 2:
            return None
        return tuple(chosen)

    def to_json(self) -> dict[str, object]:
        return {
            "worst": {place: dict(sensors) for place, sensors in self._worst.items() if sensors},
            "holding": sorted([place, pattern] for place, pattern in self.holding),
        }

    def load_json(self, data: Mapping[str, object]) -> None:
        worst = data.get("worst", {})
        holding = data.get("holding", [])
        known = {pattern.id for pattern in self.patterns}
        if isinstance(worst, Mapping):
            self._worst = {
                str(space): {str(s): int(g) for s, g in sensors.items() if s in self._kinds}
                for space, sensors in worst.items()
                if isinstance(sensors, Mapping)
            }
        if isinstance(holding, list):
            self.holding = {(str(space), str(pattern)) for space, pattern in holding if pattern in known}
