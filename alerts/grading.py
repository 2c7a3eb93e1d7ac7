"""The final grade of a risk event.

Producers suggest a grade from the set point they crossed (``protocol.kinds.SetPoint.grade``); this module
applies the two rules no producer may bypass, both from ../shared/SENSORS.md "Grades" [D]:

* Sensor evidence alone reaches II (orange) at most. Grade I (red, 特别重大) means a confirmed incident —
  casualties, spreading fire, explosion — and needs a person's confirmation, because a red grade mobilises
  the sub-district and district emergency office and notifies residents; one drifting detector must not.
* An open alert never drops grade while it is open: a reading that falls from the level-2 to the level-1
  set point does not make a verified hazard less urgent, and downgrading would hide it from the people
  escalation already reached.
"""

from __future__ import annotations

from alerts.model import Grade, RiskEvent

__all__ = ["SENSOR_CEILING", "grade"]

SENSOR_CEILING = Grade.II
"""The most severe grade sensor evidence alone can reach (SENSORS.md: "Sensor evidence alone reaches II")."""


def grade(event: RiskEvent, current: Grade | None = None) -> Grade:
    """The grade for ``event``, given the ``current`` grade of the open alert for its key (if any).

    A request for grade I without ``event.confirmed_by_person`` is capped at II. With ``current`` the result
    is never less severe than ``current`` (no downgrade while open).
    """
    suggested = Grade(event.grade)
    if suggested.more_severe_than(SENSOR_CEILING) and not event.confirmed_by_person:
        suggested = SENSOR_CEILING
    if current is not None and Grade(current).more_severe_than(suggested):
        return Grade(current)
    return suggested
