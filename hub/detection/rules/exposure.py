"""Time-weighted exposure: a carbon-monoxide dose on the EN 50291 concentration-time curve.

EN 50291-1 states when a domestic CO alarm must (and must not) sound [S]: 30 ppm — no alarm before 120 min;
50 ppm — alarm within 60–90 min; 100 ppm — within 10–40 min; 300 ppm — within 3 min. A fixed level cannot meet
all four (50 ppm must alarm, but only after an hour), so the rule integrates a *dose*:

    dose(t) = ∫ r(c(τ)) dτ,   alarm when dose ≥ 1

with the dose rate ``r(c)`` in 1/min. Holding a constant ``c`` the alarm comes after ``1 / r(c)`` minutes, so
``r`` is defined by the curve points: ``r(p.ppm) = 1 / p.minutes``, ``r = 0`` at and below ``start_ppm`` (30 ppm:
never alarms, which meets "not before 120 min"), linear in ``c`` between points, and continued with the last
segment's slope above the last point (1000 ppm alarms in under a minute). The shipped curve uses the middle
of each EN 50291 window — 50 ppm → 75 min, 100 ppm → 25 min — and 300 ppm → 2 min, inside the 3 min limit
with margin for a sensor reporting every 30–60 s. A power law in ``c`` (Haber's rule) cannot meet the 50/100
windows and the 300 ppm limit at once, hence the piecewise-linear rate.

Between two readings the rate is integrated by the trapezoid rule over at most ``max_gap_s`` (a silent sensor
does not accumulate a day of dose from two readings). While the rate is zero (clean air) the dose decays with
``half_life_min`` (default 30 min [D]; blood COHb recovers with a half-life of hours, but the alarm should not
stay on for hours after the air is clean) and is capped at ``cap`` so a long exposure clears within a few
half-lives. A dose under ``DOSE_FLOOR`` counts as zero, so the sensor returns to the cheap screening path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hub.detection.rules.model import Exposure

__all__ = ["DOSE_FLOOR", "DoseCurve"]

DOSE_FLOOR = 1e-3
"""A dose below this is zero (after ~10 half-lives of clean air the sensor is idle again)."""


@dataclass(frozen=True, slots=True)
class DoseCurve:
    """The dose rate r(c) in 1/min of an ``Exposure`` rule, and the dose update between two readings."""

    ppm: tuple[float, ...]
    rate_per_min: tuple[float, ...]
    half_life_min: float
    cap: float

    @classmethod
    def of(cls, exposure: Exposure) -> DoseCurve:
        ppm = (exposure.start_ppm, *(point.ppm for point in exposure.points))
        rates = (0.0, *(1.0 / point.minutes for point in exposure.points))
        return cls(ppm, rates, exposure.half_life_min, exposure.cap)

    def rate(self, ppm: float) -> float:
        """Dose rate (1/min) at a concentration of ``ppm``."""
        points, rates = self.ppm, self.rate_per_min
        if ppm <= points[0]:
            return 0.0
        for index in range(1, len(points)):
            if ppm <= points[index]:
                left, right = points[index - 1], points[index]
                return rates[index - 1] + (rates[index] - rates[index - 1]) * (ppm - left) / (right - left)
        if len(points) == 1:
            return rates[-1]
        slope = (rates[-1] - rates[-2]) / (points[-1] - points[-2])
        return rates[-1] + slope * (ppm - points[-1])

    def step(self, dose: float, rate_before: float, rate_now: float, minutes: float) -> float:
        """The dose ``minutes`` after a reading with rate ``rate_before``, now at ``rate_now`` (trapezoid);
        decays by the half-life while both rates are zero. Result in [0, cap], under DOSE_FLOOR → 0."""
        if rate_before == 0.0 and rate_now == 0.0:
            dose *= math.pow(0.5, minutes / self.half_life_min)
        else:
            dose += 0.5 * (rate_before + rate_now) * minutes
        dose = min(dose, self.cap)
        return 0.0 if dose < DOSE_FLOOR else dose

    def minutes_to_alarm(self, ppm: float) -> float:
        """Minutes a constant ``ppm`` takes to reach dose 1 from zero (inf when it never does)."""
        rate = self.rate(ppm)
        return math.inf if rate <= 0 else 1.0 / rate
