"""Corroboration: several sensors in one space agreeing raise confidence and grade.

Two smoke detectors in the same room are far less likely to be one dusty chamber; smoke with heat, and with
CO rising, is a fire (smouldering fires show CO first, flaming ones heat first, so the kinds may fire in any
order); gas with CO is a leak near a flame. Each pattern (``RuleSet.corroboration``) fires while it holds in a
space and clears when it no longer does; its key is ``{community}/{space}/corroboration/{pattern}``. Its grade
is capped at II like all sensor evidence (SENSORS.md "Grades": grade I needs a person).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hub.detection.rules.model import GRADE_NUMBERS, Corroboration

__all__ = ["SpaceWatch", "Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A pattern that started or stopped holding in a space; ``sensors`` are the ones that made it hold."""

    pattern: Corroboration
    space: str
    holds: bool
    sensors: tuple[str, ...]


class SpaceWatch:
    """Which sensors of each space have a firing condition, and which patterns hold in which space."""

    def __init__(self, patterns: Iterable[Corroboration], kinds: Mapping[str, str]) -> None:
        """``kinds``: sensor id → kind of every sensor that has a space."""
        self.patterns = tuple(patterns)
        self._kinds = dict(kinds)
        self._worst: dict[str, dict[str, int]] = {}
        """space → sensor → the most severe grade number among its firing conditions."""
        self.holding: set[tuple[str, str]] = set()
        """(space, pattern id) of the patterns that hold (and whose firing event was emitted)."""

    def update(self, space: str, sensor: str, worst_grade: int | None) -> list[Verdict]:
        """Record that ``sensor`` now has ``worst_grade`` firing (None: nothing firing); return what changed."""
        sensors = self._worst.setdefault(space, {})
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
            key = (space, pattern.id)
            if holds != (key in self.holding):
                (self.holding.add if holds else self.holding.discard)(key)
                verdicts.append(Verdict(pattern, space, holds, contributors or ()))
        return verdicts

    def _contributors(self, pattern: Corroboration, sensors: Mapping[str, int]) -> tuple[str, ...] | None:
        limit = GRADE_NUMBERS[pattern.min_grade]
        chosen: list[str] = []
        for kind, needed in pattern.kinds.items():
            found = sorted(s for s, grade in sensors.items() if grade <= limit and self._kinds.get(s) == kind)
            if len(found) < needed:
                return None
            chosen.extend(found)
        return tuple(chosen)

    def to_json(self) -> dict[str, object]:
        return {
            "worst": {space: dict(sensors) for space, sensors in self._worst.items() if sensors},
            "holding": sorted([space, pattern] for space, pattern in self.holding),
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
