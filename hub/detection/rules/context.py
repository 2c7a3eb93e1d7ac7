"""Where a sensor is and who lives there: the context that corroboration and grading read.

Each sensor's ``building``, ``space`` and ``tags`` are fields of its entry in the deployment file
(``hub.config.SensorConfig``), and ``hub.config.rule_contexts`` turns them into ``SensorContext``s for the hub and for
checking rule overrides at load. The engine takes the contexts as plain data, not the deployment, so the hub and the
tests build them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SENSOR_CEILING", "SensorContext", "raised_grade"]

SENSOR_CEILING = 2
"""Grade II: the most severe grade sensor evidence alone may suggest (SENSORS.md "Grades" [D])."""


@dataclass(frozen=True, slots=True)
class SensorContext:
    """One sensor's place: ``space`` (one room or area: detectors in the same space corroborate each other),
    ``building`` (for per-building rule overrides) and ``tags`` such as ``elder-living-alone``, ``school``,
    ``basement`` (a tag listed in ``RuleSet.raise_grade_tags`` raises the sensor's grades one step, except for a
    rule that lists it in ``only_tags``: there it is the rule's premise; a rule with ``only_tags`` applies only to
    sensors carrying one of them)."""

    sensor: str
    kind: str
    building: str = ""
    space: str = ""
    tags: frozenset[str] = field(default_factory=frozenset)


def raised_grade(grade: int, tags: frozenset[str], raising: frozenset[str]) -> int:
    """``grade`` (4 = IV … 1 = I) one step more severe when a tag is in ``raising``, never past II.

    Why: the same 25 %LEL in the flat of an elder living alone, a school kitchen or a basement (gas pools, no
    way out) has a worse outcome if nobody acts; but sensor evidence alone never reaches grade I.
    """
    if grade > SENSOR_CEILING and not tags.isdisjoint(raising):
        return grade - 1
    return grade
