"""Rhythms of normal life: how a quiet detector's reading moves over the local day and week.

A rhythm is an offset from the detector's baseline, in the kind's wire unit, and a pure function of the
simulation clock (Unix ms) read as local time in Asia/Shanghai: UTC+8 all year, no daylight saving. Being a
function of time only, it does not depend on the sample interval, and it never calls the wall clock. Its
random parts (whether and when a household cooks) are drawn per local day from the scenario seed and the
sensor id, in a stream of their own, so the detector's noise stream is the same with or without them.

Smooth rhythms (indoor temperature, household load, water demand) are zero-mean over the week, so the
baseline stays the long-run mean. Cooking bumps (CO, gas) only add to the baseline, which is clean air.
Every rhythm stays clear of the kind's lowest set point (``protocol/kinds.py``) on its own: normal life is
not a risk, and ``quiet_month.yaml`` run for a month proves it (tests/firmware_sim/test_sim_rhythms.py).

Kinds left without a rhythm: water depth (rain-driven, no daily cycle); smoke (scenarios do not model
spaces, the shipped smoke detectors hang in corridors, and cooking fumes reaching them are the ``spikes``
nuisance faults of ``quiet_month.yaml``); manhole and structural tilt; the two-state detectors (events). The
elder's water meter keeps its own daily use profile with its cumulative model in ``devices.py``.

Shapes and amplitudes are modelling assumptions [D] unless a source is named; SENSORS.md bounds them (the
set points they must stay under) but has no source for the daily shapes themselves.
"""

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "CABLE_LAG_TAU_MIN",
    "CABLE_SWING_C",
    "CO_MEALS",
    "GAS_MEALS",
    "INDOOR_PEAK_H",
    "INDOOR_SWING_C",
    "LOCAL_OFFSET_MS",
    "PRESSURE_SWING_PA",
    "RESIDUAL_SWING_A",
    "CookingBumps",
    "Meal",
    "Rhythm",
    "WeeklyCurve",
    "cable_temperature",
    "fire_main_pressure",
    "indoor_temperature",
    "local_day",
    "minute_of_week",
    "residual_current",
    "rhythm_for",
]

LOCAL_OFFSET_MS = 8 * 3_600_000
"""Asia/Shanghai (China Standard Time) is UTC+8 all year; China has not used daylight saving since 1991."""
DAY_MS = 86_400_000
MINUTES_PER_DAY = 1440
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_EPOCH_WEEKDAY = 3
"""1970-01-01 was a Thursday (Monday = 0)."""
_SEED_MASK = 0xFFFF_FFFF_FFFF_FFFF


def local_day(time_ms: int) -> int:
    """Local (UTC+8) calendar days since 1970-01-01 at Unix ms ``time_ms``."""
    return (time_ms + LOCAL_OFFSET_MS) // DAY_MS


def minute_of_week(time_ms: int) -> float:
    """Local (UTC+8) minutes since Monday 00:00 at Unix ms ``time_ms``, in ``[0, 10080)``."""
    local_ms = time_ms + LOCAL_OFFSET_MS
    weekday = (local_ms // DAY_MS + _EPOCH_WEEKDAY) % 7
    return weekday * MINUTES_PER_DAY + (local_ms % DAY_MS) / 60_000


class Rhythm(Protocol):
    def at(self, time_ms: int) -> float:
        """Offset from the baseline at Unix ms ``time_ms``, in the kind's wire unit."""
        ...


@dataclass(frozen=True, slots=True, eq=False)
class WeeklyCurve:
    """A smooth rhythm: one offset per local minute of the week from Monday 00:00, linear in between."""

    name: str
    unit: str
    values: tuple[float, ...]
    """``MINUTES_PER_WEEK`` offsets in ``unit``."""

    def at(self, time_ms: int) -> float:
        minute = minute_of_week(time_ms)
        index = int(minute)
        low = self.values[index]
        high = self.values[(index + 1) % MINUTES_PER_WEEK]
        return low + (high - low) * (minute - index)


def _week_from_hours(weekday: Sequence[float], weekend: Sequence[float]) -> npt.NDArray[np.float64]:
    """A minute-by-minute week from values at each local hour, Monday-Friday then Saturday-Sunday, linear in
    between (across midnight too, into the next day's table)."""
    if len(weekday) != 24 or len(weekend) != 24:
        raise ValueError("an hourly profile has 24 values")
    hourly = np.array([*weekday, *weekday, *weekday, *weekday, *weekday, *weekend, *weekend], dtype=np.float64)
    minutes = np.arange(MINUTES_PER_WEEK, dtype=np.float64)
    return np.interp(minutes, np.arange(7 * 24, dtype=np.float64) * 60.0, hourly, period=MINUTES_PER_WEEK)


def _first_order_lag(series: npt.NDArray[np.float64], tau_min: float) -> npt.NDArray[np.float64]:
    """The periodic steady state of a first-order lag (time constant ``tau_min``) driven by a weekly
    minute-by-minute ``series``: each harmonic is attenuated and delayed by ``1 / (1 + iωτ)``."""
    cycles_per_minute = np.fft.rfftfreq(series.size, d=1.0)
    response = 1.0 / (1.0 + 2j * np.pi * cycles_per_minute * tau_min)
    return np.fft.irfft(np.fft.rfft(series) * response, n=series.size)


def _swing(series: npt.NDArray[np.float64], peak_to_peak: float) -> tuple[float, ...]:
    """``series`` made zero-mean and scaled to ``peak_to_peak`` between its lowest and highest minute."""
    centred = series - series.mean()
    return tuple(float(v) for v in centred * (peak_to_peak / float(np.ptp(series))))


INDOOR_SWING_C = 3.0
"""Peak-to-peak daily swing of indoor air temperature, °C [D]."""
INDOOR_PEAK_H = 16.5
"""Local hour of the warmest indoor air [D]."""


@functools.cache
def indoor_temperature() -> WeeklyCurve:
    """Indoor air temperature at a heat detector, offset in °C: a cosine of ``INDOOR_SWING_C`` (3 °C) peak to
    peak, warmest at 16:30, coolest at 04:30, the same every day.

    Why: a flat follows the outdoor daily cycle (warmest ~14-15 h), damped and delayed an hour or two by its
    walls, and is warmed further by people and cooking in the late afternoon [D, modelling assumption]. At
    22 °C it stays far below the 50 °C normal ambient of an EN 54-5 class A1 detector (SENSORS.md).
    """
    minutes = np.arange(MINUTES_PER_WEEK, dtype=np.float64)
    phase = 2 * np.pi * (minutes / MINUTES_PER_DAY - INDOOR_PEAK_H / 24)
    return WeeklyCurve("indoor temperature", "Cel", tuple(float(v) for v in INDOOR_SWING_C / 2 * np.cos(phase)))


_LOAD_WEEKDAY = (
    0.35, 0.28, 0.25, 0.24, 0.24, 0.27, 0.40, 0.55, 0.50, 0.40, 0.38, 0.45,
    0.52, 0.45, 0.40, 0.40, 0.45, 0.60, 0.78, 0.92, 1.00, 0.98, 0.80, 0.55,
)  # fmt: skip
_LOAD_WEEKEND = (
    0.40, 0.32, 0.27, 0.25, 0.24, 0.25, 0.30, 0.40, 0.52, 0.60, 0.62, 0.65,
    0.68, 0.62, 0.58, 0.58, 0.60, 0.68, 0.82, 0.95, 1.00, 0.98, 0.85, 0.60,
)  # fmt: skip
"""Household electrical load relative to the evening peak, at each local hour (Monday-Friday; Saturday and
Sunday) [D]: a night trough at 02-05 h, a small breakfast peak, the evening peak at 19-22 h (cooking,
lighting, television, air conditioning, water heaters, e-bike charging); at weekends people are home, so the
daytime load is higher and the morning later. The usual shape of a residential load curve, not measured."""

RESIDUAL_SWING_A = 0.04
"""Peak-to-peak daily swing of a household circuit's residual current, A [D]."""
CABLE_SWING_C = 8.0
"""Peak-to-peak daily swing of a loaded cable's temperature, °C [D]."""
CABLE_LAG_TAU_MIN = 60.0
"""Thermal time constant of a cable in a distribution box, minutes [D]."""


@functools.cache
def residual_current() -> WeeklyCurve:
    """Residual (leakage) current of a household distribution circuit, offset in A: follows the household load
    (``_LOAD_WEEKDAY`` / ``_LOAD_WEEKEND``), ``RESIDUAL_SWING_A`` (40 mA) peak to peak, lowest at 03-04 h and
    highest at 20-21 h; daytime higher at weekends.

    Why: part of the leakage flows through the filter capacitors and insulation of the appliances switched
    on, so it rises with the load [D, modelling assumption]. Around the default 120 mA it spans ~105-145 mA,
    inside the 100-200 mA a healthy circuit leaks (GB 50116-2013 §9.2.3, SENSORS.md): over 5 noise sd clear of
    the 200 mA set point.
    """
    load = _week_from_hours(_LOAD_WEEKDAY, _LOAD_WEEKEND)
    return WeeklyCurve("residual current", "A", _swing(load, RESIDUAL_SWING_A))


@functools.cache
def cable_temperature() -> WeeklyCurve:
    """Temperature of a loaded cable, offset in °C: ``CABLE_SWING_C`` (8 °C) peak to peak, following the
    square of the household load through a first-order lag of ``CABLE_LAG_TAU_MIN`` (60 min), so it peaks
    ~1 h after the load (about 21-22 h) and is coolest around 04-05 h.

    Why: the conductor's heating is I²R, and the cable with its box stores heat, so its temperature follows
    the load late and smoothed [D, modelling assumption]. Around the default 32 °C it stays far below the
    60 °C "warm" set point (cable rating practice [U], SENSORS.md).
    """
    load = _week_from_hours(_LOAD_WEEKDAY, _LOAD_WEEKEND)
    return WeeklyCurve("cable temperature", "Cel", _swing(_first_order_lag(load**2, CABLE_LAG_TAU_MIN), CABLE_SWING_C))


_DEMAND_WEEKDAY = (
    0.30, 0.22, 0.18, 0.17, 0.18, 0.28, 0.60, 0.95, 1.00, 0.75, 0.62, 0.70,
    0.78, 0.65, 0.55, 0.52, 0.55, 0.65, 0.82, 0.95, 0.98, 0.90, 0.70, 0.45,
)  # fmt: skip
_DEMAND_WEEKEND = (
    0.35, 0.26, 0.20, 0.18, 0.18, 0.20, 0.30, 0.50, 0.80, 0.98, 1.00, 0.85,
    0.82, 0.70, 0.60, 0.58, 0.60, 0.70, 0.85, 0.95, 0.98, 0.90, 0.72, 0.50,
)  # fmt: skip
"""Residential water demand relative to the morning peak, at each local hour (Monday-Friday; Saturday and
Sunday) [D]: washing before work at 07-08 h, cooking at noon, the evening peak at 19-21 h, little at night;
at weekends the morning peak comes at 09-10 h. The usual shape of a residential demand curve, not measured."""

PRESSURE_SWING_PA = 40_000.0
"""Peak-to-peak daily swing of a mains-fed fire main's pressure, Pa [D]."""


@functools.cache
def fire_main_pressure() -> WeeklyCurve:
    """Pressure of a mains-fed fire main or hydrant, offset in Pa: ``PRESSURE_SWING_PA`` (0.04 MPa) peak to
    peak, highest at night (~03 h, about +17 kPa) and lowest in the demand peaks (08 h and 20 h on weekdays,
    10 h and 20 h at weekends, about -23 kPa).

    Why: the head lost in the supply network grows with the square of the flow, so pressure falls when the
    district draws water and recovers at night [D, modelling assumption]. Around the default 0.28 MPa it
    stays well above the 0.14 MPa normal supply of GB 55036-2022 §3.0.3 (SENSORS.md). A roof-tank gauge has
    static head only: switch the rhythm off for it (``rhythm: false`` in the scenario).
    """
    demand = _week_from_hours(_DEMAND_WEEKDAY, _DEMAND_WEEKEND)
    return WeeklyCurve("fire main pressure", "Pa", _swing(-(demand**2), PRESSURE_SWING_PA))


@dataclass(frozen=True, slots=True)
class Meal:
    """A household meal cooked on a gas stove, as a detector in or near the kitchen sees it."""

    name: str
    start_h: float
    """Usual local hour cooking starts; each day's start is jittered around it."""
    duration_min: float
    """How long the burner runs, minutes."""
    peak: float
    """Typical rise above the baseline at the end of cooking, kind unit (each day scaled by 0.5-1.5)."""
    probability: float
    """Chance the detector sees this meal on a given day."""


CO_MEALS = (
    Meal("breakfast", 7.0, 20.0, 3.0, 0.6),
    Meal("lunch", 12.0, 30.0, 4.0, 0.6),
    Meal("dinner", 18.5, 45.0, 6.0, 0.9),
)
"""Cooking as a home CO detector sees it, peaks in ppm [D]: a gas stove adds a few ppm while it burns (most
kitchens have a range hood), most at dinner, the meal nearly every household cooks. Even the largest day
(9 ppm on a 2 ppm baseline) stays far below EN 50291's 30 ppm no-alarm level (SENSORS.md)."""
CO_DECAY_TAU_MIN = 20.0
"""Time constant of the kitchen air (about three air changes an hour), minutes [D]."""

GAS_MEALS = (
    Meal("breakfast", 7.0, 2.0, 3.0, 0.03),
    Meal("lunch", 12.0, 2.0, 3.0, 0.03),
    Meal("dinner", 18.5, 2.0, 3.0, 0.03),
)
"""Nuisance bumps at a combustible-gas detector when a burner is lit, peaks in %LEL [D]: unburnt gas at a
slow ignition, cooking-wine or oil vapour on a catalytic cell. Rare (3 % of meals, a few a month), short
(2 min) and 1.5-4.5 %LEL, under the ~10 %LEL pre-warning of household detectors [U] (SENSORS.md)."""
GAS_DECAY_TAU_MIN = 3.0
"""Time constant of a gas puff dispersing near the cooker, minutes [D]."""

_JITTER_SD_MIN = 15.0
_JITTER_LIMIT_MIN = 45.0
_PEAK_FACTOR_LIMITS = (0.5, 1.5)


def _pulse(minutes: float, duration_min: float, tau_min: float) -> float:
    """A well-mixed room's response, peak 1, to a source on for ``duration_min``, ``minutes`` after it
    started: rises as ``1 - exp(-t/τ)`` while it burns, then decays as ``exp(-t/τ)``."""
    if minutes <= 0.0:
        return 0.0
    top = 1.0 - math.exp(-duration_min / tau_min)
    if minutes <= duration_min:
        return (1.0 - math.exp(-minutes / tau_min)) / top
    after = minutes - duration_min
    return math.exp(-after / tau_min) if after < 15 * tau_min else 0.0


class CookingBumps:
    """Rises above a clean-air baseline while a household cooks, drawn per local day: whether each meal is
    seen (``Meal.probability``), its start (normal jitter, sd 15 min, within ±45 min) and its peak (the meal's
    ``peak`` times a lognormal factor clipped to 0.5-1.5). The shape is :func:`_pulse` with ``decay_tau_min``.
    Not thread-safe (a small per-day cache); one detector owns one."""

    __slots__ = ("_days", "_entropy", "decay_tau_min", "meals")

    def __init__(
        self, *, meals: Sequence[Meal], decay_tau_min: float, scenario_seed: int, sensor_id: str, stream: str
    ) -> None:
        self.meals = tuple(meals)
        self.decay_tau_min = decay_tau_min
        digest = hashlib.sha256(f"rhythm/{stream}/{sensor_id}".encode()).digest()
        self._entropy = (scenario_seed & _SEED_MASK, int.from_bytes(digest[:8], "big"))
        self._days: dict[int, tuple[tuple[float, float, float], ...]] = {}

    def at(self, time_ms: int) -> float:
        day = local_day(time_ms)
        minute = (time_ms + LOCAL_OFFSET_MS - day * DAY_MS) / 60_000
        total = 0.0
        for back in (0, 1):  # yesterday's late cooking may still be decaying after midnight
            for start_min, duration_min, peak in self.bumps(day - back):
                total += peak * _pulse(minute + back * MINUTES_PER_DAY - start_min, duration_min, self.decay_tau_min)
        return total

    def bumps(self, day: int) -> tuple[tuple[float, float, float], ...]:
        """(start minute of the local day, duration in minutes, peak in kind unit) of each meal seen on
        ``day`` (local days since 1970-01-01)."""
        cached = self._days.get(day)
        if cached is not None:
            return cached
        rng = np.random.default_rng(np.random.SeedSequence([*self._entropy, day & _SEED_MASK]))
        seen = []
        for meal in self.meals:  # every meal draws all three numbers, so one meal's odds leave the others alone
            cooked = float(rng.random()) < meal.probability
            jitter = float(np.clip(rng.normal(0.0, _JITTER_SD_MIN), -_JITTER_LIMIT_MIN, _JITTER_LIMIT_MIN))
            factor = float(np.clip(rng.lognormal(0.0, 0.3), *_PEAK_FACTOR_LIMITS))
            if cooked:
                seen.append((meal.start_h * 60 + jitter, meal.duration_min, meal.peak * factor))
        if len(self._days) >= 4:
            del self._days[min(self._days)]
        self._days[day] = result = tuple(seen)
        return result


def rhythm_for(kind: str, *, scenario_seed: int, sensor_id: str) -> Rhythm | None:
    """The rhythm of normal life of a detector of ``kind`` (a :data:`protocol.kinds.KINDS` name), or None
    for kinds without one (see the module docstring)."""
    if kind == "temperature":
        return indoor_temperature()
    if kind == "residual-current":
        return residual_current()
    if kind == "cable-temperature":
        return cable_temperature()
    if kind == "pressure":
        return fire_main_pressure()
    if kind == "co":
        return CookingBumps(
            meals=CO_MEALS,
            decay_tau_min=CO_DECAY_TAU_MIN,
            scenario_seed=scenario_seed,
            sensor_id=sensor_id,
            stream=kind,
        )
    if kind == "gas":
        return CookingBumps(
            meals=GAS_MEALS,
            decay_tau_min=GAS_DECAY_TAU_MIN,
            scenario_seed=scenario_seed,
            sensor_id=sensor_id,
            stream=kind,
        )
    return None
