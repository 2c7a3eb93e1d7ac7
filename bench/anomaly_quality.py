"""The streaming anomaly detector's quality on labelled series (issue 5, layer 3), NAB-style, against z-scores.

What it shows: how ``anju-hub score`` (``hub.detection.score_csv.score_csv``, the code path users backtest with, and
through it ``AnomalyDetector`` with its default config) does on a fixed, seeded corpus of synthetic series shaped
like the real families issue 5 will be judged on, next to two detectors people commonly use, scored the same way
in the same run. What it cannot show: how it does on *real* series with *operators'* labels. The corpus is ours:
its shapes, noise and anomalies are what we chose to put in, the windows are where we know the anomaly is (an
operator labels a failure, sometimes late, sometimes not at all), and a detector tuned to this bench could still do
badly on real data. Read it as a regression check and a comparison with the references, not as the real score.

Corpus (``FAMILIES``; every series from ``numpy.random.default_rng`` of a fixed seed; wall-clock times from Monday
2026-09-07 00:00, written without an offset, so the detector's hour and weekday terms use them as they are):

``machine_temp``       5 min, 28 d: a machine's temperature, a random-walk-ish level with AR noise and normal load
                       steps; a failure drifts it up, slowly then faster, over 10–30 h before a breakdown (a fall
                       to ambient). Window: drift start to breakdown + 1 h; the downtime and restart are ignored.
``hvac_room``          5 min, 35 d: a room's temperature under an occupancy schedule (weekdays 07–19, setback at
                       night and at weekends); half the series have a weekday holiday (setback all day, not
                       labelled). Faults: a valve stuck open (level up), the setback lost (rhythm gone), heating
                       failed (slow fall). Window: 12–14 h from the fault.
``water_use``          15 min, 35 d: an elder living alone, lumpy bursts mornings, noon and evenings, light days.
                       Faults: a missed day (no use from 06:00; window to 22:00), a leak (a raised night floor;
                       window 24 h).
``ev_current``         1 min, 14 d: a charging point's current, sessions of 16 or 32 A starting and ending at
                       will (normal steps), two labelled single-minute spikes (2.5–3.5 × rated). Window: 10 min.
``pump_pressure``      5 min, 28 d: a booster pump's pressure with the demand's daily dips and short unlabelled
                       dips (a big draw); a level shift down of 0.25–0.45 bar. Window: 6 h.
``basement_humidity``  15 min, 42 d: relative humidity wandering with the weather; a change in variance (a
                       dehumidifier short-cycling, or a failing sensor's noise 4–6 ×). Window: 12 h.
``outliers``           5 min, 21 d: a daily rhythm with heavy-tailed noise (Student t, 3 dof: large readings that
                       are *not* labelled) and two labelled isolated outliers 25–40 × the noise scale. Window: 15 min.
``office_power``       15 min, 42 d: a building's electricity, weekday working hours, Saturday mornings, weekday
                       holidays (not labelled). Faults: equipment left on (a raised base load; window 24 h), a stuck
                       meter (a flat value for 1–2 days; window: the whole stuck time + 1 h).

Gaps of hours without data (not labelled) are cut into most families, away from the windows.

Detectors: Anju (scores from the CSV round trip); reference *rolling z-score*: the mean and sample standard deviation
of the readings of the 24 h before (at least 12 of them), ``score = 1 - 2 ** (-|z| / 3)``, so 0.5 is the customary
3σ, 0.75 is 6σ and 0.9 is 10σ (a map that does not stop at 1 early, so the best-threshold search reaches far into the
tails); second reference *seasonal-naive z-score*: the reading minus the one at the same time the day before
(within half a step), standardised by the mean and standard deviation of those differences over the 7 days before
(at least 12), same mapping. Both are causal and written here.

Scoring, after the Numenta Anomaly Benchmark's published description (written from it, not from its code), its
"standard" profile: a reading is *flagged* at score ≥ threshold (0.5, and also each detector's best on the corpus,
from ``THRESHOLDS``). The first 15 % of each series is probation (nothing counted). A window's first flagged reading
counts ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` with y = (detection - window end) / window length in [-1, 0] (0.99 at the
window's start, 0 at its end); a missed window counts -1. Flagged readings outside the windows are counted in
*episodes*, as alerts with an hour's hold-off would page someone: a flagged reading raises one unless one was raised
in the ``HOLD_OFF_MS`` before, so consecutive flags within the hour are one episode and a flag that stays up is
charged once an hour (not once a reading as in NAB, nor once for a whole day). An episode that begins inside a window
or an ignored span is not false; a false one counts -0.11 × (-sigma(y)) if it follows a window (y from that window's
end, in window lengths: little right after a window), else -0.11. Score normalised over the corpus (or a family):
100 × (S - S_null) / (S_perfect - S_null), where the null detector misses every window (0) and the perfect one flags
each at its start and nothing else (100); a detector with more false episodes than it earns scores below 0. Also:
windows detected, median delay (minutes from the window's start to its first flagged reading), false episodes per
1,000 readings judged and per series-week judged. The ratio is Anju's score over the reference's (when both > 0).

``python -m bench anomaly_quality``
"""

import io
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.detection.score_csv import score_csv

__all__ = [
    "FAMILIES",
    "Family",
    "Outcome",
    "Series",
    "anju_scores",
    "corpus",
    "evaluate",
    "main",
    "report",
    "rolling_z",
    "run",
    "seasonal_naive_z",
]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
T0_MS = int(np.datetime64("2026-09-07T00:00", "ms").astype(np.int64))
"""Monday 2026-09-07 00:00, wall-clock time (ms as if UTC: the CSV carries no offset)."""
_EPOCH_WEEKDAY = 3
"""1970-01-01 was a Thursday (Monday 0)."""

THRESHOLD = 0.5
THRESHOLDS: tuple[float, ...] = (*(round(0.05 * k, 2) for k in range(1, 20)), 0.99, 1.0)
"""The thresholds each detector's best is chosen from (on the whole corpus)."""
PROBATION = 0.15
"""Share of each series at its start where nothing is counted (NAB's probationary period)."""
HOLD_OFF_MS = HOUR_MS
"""An episode: a flagged reading and the flagged readings in the hour after it (an alert's hold-off)."""
A_TP, A_FN, A_FP = 1.0, -1.0, -0.11
"""NAB's standard profile weights."""
SEEDS = 4
"""Series per family."""
Z_K = 3.0
"""The references' score is 1 - 2 ** (-|z| / Z_K): 0.5 at Z_K standard deviations, 0.75 at twice that."""


def _sigma(y: float) -> float:
    """NAB's scaled sigmoid: 0.987 at y = -1 (a window's start), 0 at y = 0 (its end), towards -1 after it."""
    return 2.0 / (1.0 + math.exp(min(5.0 * y, 700.0))) - 1.0


# -- corpus -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """One labelled series: wall-clock times (ms), values, anomaly windows and spans not counted, both [start, end]."""

    family: str
    seed: int
    kind: str
    time_ms: Ints
    value: Floats
    windows: tuple[tuple[int, int], ...]
    ignored: tuple[tuple[int, int], ...] = ()

    @property
    def probation_end_ms(self) -> int:
        first, last = int(self.time_ms[0]), int(self.time_ms[-1])
        return first + int(PROBATION * (last - first))


def _grid(days: int, step_min: int) -> Ints:
    step = step_min * MINUTE_MS
    return T0_MS + np.arange(days * DAY_MS // step, dtype=np.int64) * step


def _hour(t: Ints) -> Floats:
    return (t % DAY_MS) / HOUR_MS


def _weekday(t: Ints) -> Ints:
    return (t // DAY_MS + _EPOCH_WEEKDAY) % 7


def _day(t: Ints) -> Ints:
    return (t - T0_MS) // DAY_MS


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> Floats:
    """A stationary AR(1) path: x[i] = phi x[i-1] + N(0, sigma)."""
    e = rng.normal(0.0, sigma, n)
    out = np.empty(n)
    x = float(e[0]) / math.sqrt(1.0 - phi * phi)
    out[0] = x
    for i in range(1, n):
        x = phi * x + float(e[i])
        out[i] = x
    return out


def _lag(target: Floats, alpha: Floats | float, start: float | None = None) -> Floats:
    """A first-order response to ``target`` (a room's temperature to its set point): y += alpha (target - y)."""
    a = np.broadcast_to(np.asarray(alpha, np.float64), target.shape)
    out = np.empty(len(target))
    y = float(target[0]) if start is None else start
    for i in range(len(target)):
        y += float(a[i]) * (float(target[i]) - y)
        out[i] = y
    return out


def _alpha(step_min: int, tau_min: float) -> float:
    return 1.0 - math.exp(-step_min / tau_min)


def _onset_day(rng: np.random.Generator, t: Ints, lo: float = 0.55, hi: float = 0.85, weekday: bool = False) -> int:
    """A day index between ``lo`` and ``hi`` of the series (a weekday if asked)."""
    days = int(_day(t[-1:])[0]) + 1
    choices = [d for d in range(int(lo * days), int(hi * days)) if not weekday or d % 7 < 5]
    return int(rng.choice(choices))


def _at(day: int, hour: float) -> int:
    return T0_MS + day * DAY_MS + int(hour * HOUR_MS)


def _cut_gaps(
    rng: np.random.Generator,
    t: Ints,
    count: int,
    hours: tuple[float, float],
    avoid: Sequence[tuple[int, int]],
) -> Bools:
    """Readings kept after ``count`` gaps of ``hours`` (uniform) are cut, none within a day of ``avoid``."""
    keep = np.ones(len(t), bool)
    first, last = int(t[0]) + DAY_MS, int(t[-1]) - DAY_MS
    placed = 0
    for _ in range(50 * count):
        if placed == count:
            break
        start = int(rng.integers(first, last))
        end = start + int(rng.uniform(*hours) * HOUR_MS)
        if any(start < b + DAY_MS and end > a - DAY_MS for a, b in avoid):
            continue
        keep &= ~((t >= start) & (t < end))
        placed += 1
    return keep


def _series(
    family: str,
    seed: int,
    kind: str,
    t: Ints,
    v: Floats,
    windows: Sequence[tuple[int, int]],
    keep: Bools | None = None,
    ignored: Sequence[tuple[int, int]] = (),
) -> Series:
    if keep is not None:
        t, v = t[keep], v[keep]
    return Series(family, seed, kind, t, v, tuple(windows), tuple(ignored))


def machine_temp(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(28, 5)
    n = len(t)
    steps = np.zeros(n)
    for at in rng.integers(0, n, rng.poisson(9)):
        steps[at:] += rng.normal(0.0, 0.8)  # load changes: normal level steps
    level = 80.0 + _lag(steps, _alpha(5, 30), 0.0) + _ar1(rng, n, 0.998, 0.06)
    noise = _ar1(rng, n, 0.7, 0.3)
    start = _at(_onset_day(rng, t), rng.uniform(0, 24))
    length = rng.uniform(10, 30) * HOUR_MS
    rise = rng.uniform(5, 9)
    broken = int(start + length)
    down = broken + int(rng.uniform(6, 14) * HOUR_MS)
    s = np.clip((t - start) / length, 0.0, 1.0)
    target = level + rise * s * s
    off = (t >= broken) & (t < down)
    target = np.where(off, 28.0, target)
    # Cooling after the breakdown and warming at the restart: a thermal lag on those hours only.
    around = (t >= broken) & (t < down + 4 * HOUR_MS)
    alpha = np.where(around, _alpha(5, 90), 1.0)
    value = _lag(target, alpha) + noise
    window = (start, broken + HOUR_MS)
    return _series("machine_temp", seed, "failure drift", t, value, [window], ignored=[(window[1], down + 4 * HOUR_MS)])


HVAC_KINDS = ("stuck valve", "setback lost", "heating failed")


def hvac_room(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(35, 5)
    n = len(t)
    kind = HVAC_KINDS[seed % len(HVAC_KINDS)]
    hour, weekday, day = _hour(t), _weekday(t), _day(t)
    occupied = (weekday < 5) & (hour >= 7) & (hour < 19)
    fault_day = _onset_day(rng, t, weekday=True)
    if seed % 2 == 0:  # a weekday holiday: setback all day (not labelled)
        holiday = int(rng.choice([d for d in range(8, 33) if d % 7 < 5 and abs(d - fault_day) > 2]))
        occupied &= day != holiday
    setpoint = np.where(occupied, 21.5, 17.0)
    alpha = np.full(n, _alpha(5, 60))
    if kind == "stuck valve":
        start = _at(fault_day, 19)
        setpoint = np.where(t >= start, 24.5, setpoint)
        window = (start, start + 12 * HOUR_MS)
    elif kind == "setback lost":
        start = _at(fault_day, 19)
        setpoint = np.where(t >= start, 21.5, setpoint)
        window = (start, start + 14 * HOUR_MS)
    else:
        start = _at(fault_day, 10)
        setpoint = np.where(t >= start, 13.0, setpoint)
        alpha = np.where(t >= start, _alpha(5, 240), alpha)
        window = (start, start + 12 * HOUR_MS)
    solar = 0.4 * np.clip(np.sin(2 * np.pi * (hour - 9) / 24), 0.0, None)
    value = _lag(setpoint, alpha) + solar + _ar1(rng, n, 0.9995, 0.012) + _ar1(rng, n, 0.8, 0.06)
    keep = _cut_gaps(rng, t, 2, (2, 8), [window])
    return _series("hvac_room", seed, kind, t, value, [window], keep)


def water_use(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(35, 15)
    n = len(t)
    kind = ("missed day", "leak")[seed % 2]
    hour, day = _hour(t), _day(t)
    days = int(day[-1]) + 1
    wake, lunch, evening = (rng.normal(m, s, days)[day] for m, s in ((6.75, 0.5), (12.0, 0.4), (18.5, 0.6)))
    active = ((hour >= wake) & (hour < wake + 2)) | ((hour >= lunch) & (hour < lunch + 1))
    active |= (hour >= evening) & (hour < evening + 2.5)
    light = np.where(rng.random(days) < 0.15, 0.5, 1.0)[day]
    litres = np.where(active, (rng.random(n) < 0.65) * rng.gamma(2.0, 7.0, n), 0.0)
    awake = (hour >= 7) & (hour < 22)
    litres += np.where(awake, (rng.random(n) < 0.08) * rng.gamma(1.5, 3.0, n), (rng.random(n) < 0.03) * 6.0)
    litres *= light
    if kind == "missed day":
        d = _onset_day(rng, t)
        litres[(t >= _at(d, 6)) & (t < _at(d + 1, 6))] = 0.0
        window = (_at(d, 6), _at(d, 22))
    else:
        start = _at(_onset_day(rng, t), rng.uniform(0, 24))
        litres = litres + np.where(t >= start, rng.uniform(1.0, 2.5), 0.0)
        window = (start, start + DAY_MS)
    keep = _cut_gaps(rng, t, int(rng.integers(1, 3)), (1, 6), [window])
    return _series("water_use", seed, kind, t, litres, [window], keep)


def ev_current(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(14, 1)
    n = len(t)
    rated = 32.0 if seed % 2 else 16.0
    amps = np.zeros(n)
    for d in range(14):
        for _ in range(rng.poisson(2.5)):
            centre = rng.normal(18.5, 1.5) if rng.random() < 0.6 else rng.normal(8.0, 1.2)
            begin = (d * 24 + centre) * 60
            length = rng.uniform(0.75, 3.5) * 60
            i0, i1 = int(begin), int(begin + length)
            if i0 < 0 or i0 >= n:
                continue
            i1 = min(i1, n)
            profile = np.minimum(1.0, 0.3 + 0.7 * (i1 - np.arange(i0, i1)) / (0.25 * length))  # tapers at the end
            amps[i0:i1] = np.maximum(amps[i0:i1], rated * rng.uniform(0.9, 1.0) * profile)
    charging = amps > 0
    value = np.where(charging, amps + rng.normal(0.0, 0.15, n), 0.08 + np.abs(rng.normal(0.0, 0.01, n)))
    windows = []
    lo, hi = int(0.55 * n), int(0.95 * n)
    spikes: list[int] = []
    while len(spikes) < 2:
        i = int(rng.integers(lo, hi))
        if all(abs(i - j) > 1440 for j in spikes):
            spikes.append(i)
    for i in sorted(spikes):
        value[i] = rated * rng.uniform(2.5, 3.5)
        windows.append((int(t[i]), int(t[i]) + 10 * MINUTE_MS))
    return _series("ev_current", seed, f"{rated:.0f} A spikes", t, value, windows)


def pump_pressure(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(28, 5)
    n = len(t)
    hour, weekday, day = _hour(t), _weekday(t), _day(t)
    h = hour - np.where(weekday >= 5, 1.5, 0.0)
    demand = np.exp(-(((h - 7.5) / 1.2) ** 2)) + 0.8 * np.exp(-(((h - 19.5) / 1.8) ** 2)) + 0.2
    daily = rng.normal(1.0, 0.1, int(day[-1]) + 1)[day]
    value = 4.2 - 0.35 * demand * daily + _ar1(rng, n, 0.999, 0.004) + _ar1(rng, n, 0.6, 0.02)
    for i in rng.integers(0, n, rng.poisson(14)):  # a big draw: a short dip (not labelled)
        value[i : i + int(rng.integers(3, 9))] -= rng.uniform(0.2, 0.35)
    start = _at(_onset_day(rng, t), rng.uniform(0, 24))
    value = value - np.where(t >= start, rng.uniform(0.25, 0.45), 0.0)
    window = (start, start + 6 * HOUR_MS)
    keep = _cut_gaps(rng, t, int(rng.integers(1, 3)), (1, 4), [window])
    return _series("pump_pressure", seed, "level down", t, value, [window], keep)


def basement_humidity(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(42, 15)
    n = len(t)
    kind = ("short-cycling", "noisy sensor")[seed % 2]
    hour = _hour(t)
    noise = _ar1(rng, n, 0.5, 0.3)
    base = 60.0 + _ar1(rng, n, 0.998, 0.18) + 1.0 * np.sin(2 * np.pi * (hour - 15) / 24)
    start = _at(_onset_day(rng, t), rng.uniform(0, 24))
    after = t >= start
    if kind == "short-cycling":
        swing = rng.uniform(2.5, 4.0) * np.sin(2 * np.pi * (t - start) / (90 * MINUTE_MS))
        value = base + noise * np.where(after, 2.0, 1.0) + np.where(after, swing, 0.0)
    else:
        value = base + np.where(after, noise * rng.uniform(4.0, 6.0), noise)
    window = (start, start + 12 * HOUR_MS)
    keep = _cut_gaps(rng, t, int(rng.integers(1, 3)), (2, 10), [window])
    return _series("basement_humidity", seed, kind, t, value, [window], keep)


def outliers(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(21, 5)
    n = len(t)
    value = 50.0 + 6.0 * np.sin(2 * np.pi * (_hour(t) - 8) / 24) + _ar1(rng, n, 0.995, 0.1)
    value += 0.4 * rng.standard_t(3, n)  # heavy-tailed, and normal
    windows = []
    lo, hi = int(0.5 * n), int(0.95 * n)
    picks: list[int] = []
    while len(picks) < 2:
        i = int(rng.integers(lo, hi))
        if all(abs(i - j) > 288 for j in picks):
            picks.append(i)
    for i in sorted(picks):
        value[i] += rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 16.0)
        windows.append((int(t[i]), int(t[i]) + 15 * MINUTE_MS))
    keep = _cut_gaps(rng, t, 1, (1, 4), windows)
    return _series("outliers", seed, "isolated outliers", t, value, windows, keep)


def office_power(rng: np.random.Generator, seed: int) -> Series:
    t = _grid(42, 15)
    n = len(t)
    kind = ("left on", "stuck meter")[seed % 2]
    hour, weekday, day = _hour(t), _weekday(t), _day(t)
    fault_day = _onset_day(rng, t, weekday=True)
    holidays = rng.choice([d for d in range(8, 40) if d % 7 < 5 and abs(d - fault_day) > 2], 1 + seed % 2, False)
    work = (weekday < 5) & ~np.isin(day, holidays)
    ramp = np.clip(hour - 7.5, 0, 1) * np.clip(19.0 - hour, 0, 1)
    saturday = (weekday == 5) * np.clip(hour - 7.5, 0, 1) * np.clip(13.0 - hour, 0, 1)
    factor = rng.normal(1.0, 0.05, int(day[-1]) + 1)[day]
    load = 35.0 + 110.0 * factor * ramp * work + 25.0 * saturday
    value = load * (1 + rng.normal(0.0, 0.03, n)) + rng.normal(0.0, 1.5, n)
    if kind == "left on":
        start = _at(fault_day, 18.5)
        value = value + np.where(t >= start, rng.uniform(40.0, 70.0), 0.0)
        window = (start, start + DAY_MS)
    else:
        start = _at(fault_day, rng.uniform(0, 24))
        end = start + int(rng.uniform(24, 48) * HOUR_MS)
        stuck = (t >= start) & (t < end)
        value[stuck] = value[np.flatnonzero(stuck)[0] - 1]
        window = (start, end + HOUR_MS)
    keep = _cut_gaps(rng, t, int(rng.integers(0, 2)), (2, 6), [window])
    return _series("office_power", seed, kind, t, value, [window], keep)


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    step_min: int
    days: int
    make: Callable[[np.random.Generator, int], Series]


FAMILIES = (
    Family("machine_temp", 5, 28, machine_temp),
    Family("hvac_room", 5, 35, hvac_room),
    Family("water_use", 15, 35, water_use),
    Family("ev_current", 1, 14, ev_current),
    Family("pump_pressure", 5, 28, pump_pressure),
    Family("basement_humidity", 15, 42, basement_humidity),
    Family("outliers", 5, 21, outliers),
    Family("office_power", 15, 42, office_power),
)


def corpus(families: Sequence[Family] = FAMILIES, seeds: int = SEEDS) -> list[Series]:
    """Every family's series for seeds 0 … seeds - 1, each from its own fixed generator seed."""
    out = []
    for number, family in enumerate(families):
        for seed in range(seeds):
            rng = np.random.default_rng([2026, number, seed])
            out.append(family.make(rng, seed))
    return out


# -- detectors ----------------------------------------------------------------------------------------------------


def anju_scores(series: Series) -> Floats:
    """Anju's scores of ``series`` as ``anju-hub score`` gives them: CSV text in, ``score_csv``, CSV text out."""
    stamps = np.datetime_as_string(series.time_ms.astype("datetime64[ms]"), unit="s")
    lines = ["timestamp,value", *(f"{s},{float(v)!r}" for s, v in zip(stamps, series.value, strict=True))]
    source, sink = io.StringIO("\n".join(lines) + "\n"), io.StringIO()
    rows = score_csv(source, sink, name=f"{series.family}-{series.seed}")
    assert rows == len(series.time_ms)
    scored = sink.getvalue().splitlines()[1:]
    return np.array([float(line.rsplit(",", 1)[1]) for line in scored])


def _z_score(z: Floats, known: Bools) -> Floats:
    return np.where(known, -np.expm1(-np.log(2.0) * np.abs(np.nan_to_num(z, nan=0.0, posinf=1e9)) / Z_K), 0.0)


def _trailing_z(t: Ints, x: Floats, window_ms: int, least: int = 12) -> tuple[Floats, Bools]:
    """z of each x[i] against the mean and sample std of the finite x[j], t[i] - window_ms <= t[j] < t[i]."""
    valid = np.isfinite(x)
    origin = float(x[valid][0]) if valid.any() else 0.0
    y = np.where(valid, x - origin, 0.0)  # centred on a causal constant: sums of squares without cancellation
    c0 = np.r_[0.0, np.cumsum(valid)]
    c1 = np.r_[0.0, np.cumsum(y)]
    c2 = np.r_[0.0, np.cumsum(y * y)]
    lo = np.searchsorted(t, t - window_ms, side="left")
    hi = np.arange(len(t))
    count = c0[hi] - c0[lo]
    enough = count >= least
    safe = np.maximum(count, 2.0)
    mean = (c1[hi] - c1[lo]) / safe
    var = np.maximum((c2[hi] - c2[lo]) - safe * mean * mean, 0.0) / (safe - 1.0)
    floor = 1e-9 * (1.0 + np.abs(mean + origin))
    with np.errstate(invalid="ignore"):
        z = (y - mean) / np.maximum(np.sqrt(var), floor)
    return z, enough & valid


def rolling_z(t: Ints, v: Floats, window_ms: int = DAY_MS) -> Floats:
    """The reference: |z| of each reading against the readings of the ``window_ms`` before it, 1 - 2 ** (-|z| / 3)."""
    z, known = _trailing_z(t, v, window_ms)
    return _z_score(z, known)


def seasonal_naive_z(t: Ints, v: Floats, period_ms: int = DAY_MS, window_ms: int = WEEK_MS) -> Floats:
    """The second reference: the reading minus the one ``period_ms`` before (the nearest, within half the series'
    usual step), standardised by those differences over the ``window_ms`` before; 1 - 2 ** (-|z| / 3)."""
    n = len(t)
    tolerance = float(np.median(np.diff(t))) / 2.0 if n > 1 else 0.0
    want = t - period_ms
    j = np.clip(np.searchsorted(t, want), 1, max(n - 1, 1))
    nearer = np.where(np.abs(t[j - 1] - want) <= np.abs(t[j] - want), j - 1, j)
    matched = (np.abs(t[nearer] - want) <= tolerance) & (t[nearer] < t)
    diff = np.where(matched, v - v[nearer], np.nan)
    z, known = _trailing_z(t, diff, window_ms)
    return _z_score(z, known)


DETECTORS: tuple[tuple[str, Callable[[Series], Floats]], ...] = (
    ("Anju", anju_scores),
    ("rolling z-score", lambda s: rolling_z(s.time_ms, s.value)),
    ("seasonal-naive z-score", lambda s: seasonal_naive_z(s.time_ms, s.value)),
)


# -- scoring ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One detector at one threshold on some series, NAB-like; ``+`` pools two (the score is normalised after)."""

    windows: int = 0
    detected: int = 0
    delays_min: list[float] = field(default_factory=list)
    false_alerts: int = 0
    points: int = 0
    weeks: float = 0.0
    raw: float = 0.0
    perfect: float = 0.0
    null: float = 0.0

    def __add__(self, other: "Outcome") -> "Outcome":
        return Outcome(
            self.windows + other.windows,
            self.detected + other.detected,
            self.delays_min + other.delays_min,
            self.false_alerts + other.false_alerts,
            self.points + other.points,
            self.weeks + other.weeks,
            self.raw + other.raw,
            self.perfect + other.perfect,
            self.null + other.null,
        )

    @property
    def nab(self) -> float:
        """100 for a detector that flags each window at its start, 0 for one that never flags."""
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else 0.0

    @property
    def median_delay_min(self) -> float:
        return statistics.median(self.delays_min) if self.delays_min else math.nan

    @property
    def per_1000(self) -> float:
        return 1000.0 * self.false_alerts / self.points if self.points else 0.0

    @property
    def per_week(self) -> float:
        return self.false_alerts / self.weeks if self.weeks else 0.0


def _alerts(times: Ints) -> list[int]:
    """When alerts are raised for flagged readings at ``times`` (sorted): at a flagged reading, unless one was raised
    less than ``HOLD_OFF_MS`` before (an hour's hold-off)."""
    raised: list[int] = []
    i = 0
    while i < len(times):
        raised.append(int(times[i]))
        i = int(np.searchsorted(times, times[i] + HOLD_OFF_MS, side="left"))
    return raised


def evaluate(series: Series, scores: Floats, threshold: float = THRESHOLD) -> Outcome:
    """NAB-like outcome of ``scores`` (one per reading of ``series``) at ``threshold``."""
    t = series.time_ms
    counted = t >= series.probation_end_ms
    flagged = np.flatnonzero((scores >= threshold) & counted)
    out = Outcome(windows=len(series.windows), points=int(counted.sum()))
    out.weeks = float(t[-1] - series.probation_end_ms) / WEEK_MS
    out.perfect = A_TP * _sigma(-1.0) * len(series.windows)
    out.null = A_FN * len(series.windows)
    for start, end in series.windows:
        inside = flagged[(t[flagged] >= start) & (t[flagged] <= end)]
        if len(inside):
            first = int(t[inside[0]])
            out.detected += 1
            out.delays_min.append((first - start) / MINUTE_MS)
            out.raw += A_TP * _sigma((first - end) / max(end - start, 1))
        else:
            out.raw += A_FN
    times = t[flagged]
    spans = (*series.windows, *series.ignored)
    for begin in _alerts(times):
        if any(a <= begin <= b for a, b in spans):
            continue
        out.false_alerts += 1
        before = [(a, b) for a, b in series.windows if b < begin]
        if before:
            a, b = max(before, key=lambda w: w[1])
            out.raw += -A_FP * _sigma((begin - b) / max(b - a, 1))
        else:
            out.raw += A_FP
    return out


def _pool(outcomes: Sequence[Outcome]) -> Outcome:
    total = Outcome()
    for one in outcomes:
        total = total + one
    return total


@dataclass(frozen=True, slots=True)
class Result:
    families: tuple[Family, ...]
    series: list[Series]
    scores: dict[str, list[Floats]]
    """Per detector name, one score array per series (in ``series`` order)."""
    seconds: dict[str, float]
    """CPU seconds each detector took on the whole corpus."""
    _outcomes: dict[tuple[str, float, int], Outcome] = field(default_factory=dict)

    def outcome(self, detector: str, threshold: float, family: str | None = None) -> Outcome:
        """``detector``'s outcome at ``threshold`` pooled over the corpus, or over one family's series."""
        pooled = []
        for i, (s, scores) in enumerate(zip(self.series, self.scores[detector], strict=True)):
            if family is None or s.family == family:
                key = (detector, threshold, i)
                if key not in self._outcomes:
                    self._outcomes[key] = evaluate(s, scores, threshold)
                pooled.append(self._outcomes[key])
        return _pool(pooled)

    def best_threshold(self, detector: str) -> float:
        """The threshold of ``THRESHOLDS`` with the best NAB-like score on the whole corpus (the lowest of ties)."""
        best = max(self.outcome(detector, x).nab for x in THRESHOLDS)
        return next(x for x in THRESHOLDS if self.outcome(detector, x).nab == best)


def run(families: Sequence[Family] = FAMILIES, seeds: int = SEEDS) -> Result:
    series = corpus(families, seeds)
    scores: dict[str, list[Floats]] = {}
    seconds: dict[str, float] = {}
    for name, detector in DETECTORS:
        start = time.process_time()
        scores[name] = [detector(s) for s in series]
        seconds[name] = time.process_time() - start
    return Result(tuple(families), series, scores, seconds)


# -- report -------------------------------------------------------------------------------------------------------


def _brief(o: Outcome) -> str:
    delay = "-" if math.isnan(o.median_delay_min) else f"{o.median_delay_min:,.0f} min"
    return (
        f"{o.nab:.1f} ({o.detected}/{o.windows} windows, median delay {delay}, "
        f"{o.per_1000:.2f} false episodes per 1,000 readings)"
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 and a >= 0 else f"n/a (difference {a - b:+.1f} points)"


def report(r: Result, out: Any = sys.stdout) -> None:
    anju, ref, seasonal = (name for name, _ in DETECTORS)
    readings = sum(len(s.time_ms) for s in r.series)
    windows = sum(len(s.windows) for s in r.series)
    a, z, sz = (r.outcome(name, THRESHOLD) for name in (anju, ref, seasonal))
    best = {name: r.best_threshold(name) for name in (anju, ref, seasonal)}
    ab, zb, szb = (r.outcome(name, best[name]) for name in (anju, ref, seasonal))

    def full(o: Outcome) -> str:
        delay = "-" if math.isnan(o.median_delay_min) else f"{o.median_delay_min:,.0f} min"
        return (
            f"NAB-like score {o.nab:.1f}, windows detected {o.detected}/{o.windows}, median delay {delay}, "
            f"false episodes {o.per_1000:.2f} per 1,000 readings ({o.per_week:.2f} per series-week)"
        )

    out.write(
        f"anomaly quality, {len(r.series)} labelled synthetic series ({len({s.family for s in r.series})} families, "
        f"{windows} windows, {readings:,} readings; NAB standard profile, threshold {THRESHOLD}): "
        f"Anju (anju-hub score's code path) {full(a)}; reference rolling z-score (24 h, 1 - 2^(-|z|/3)): {full(z)}; "
        f"ratio {_ratio(a.nab, z.nab)}; at each one's best threshold on the corpus: Anju {ab.nab:.1f} "
        f"(≥ {best[anju]}: {ab.detected}/{ab.windows}, {ab.per_1000:.2f} per 1,000), rolling z {zb.nab:.1f} "
        f"(≥ {best[ref]}: {zb.detected}/{zb.windows}, {zb.per_1000:.2f} per 1,000), ratio {_ratio(ab.nab, zb.nab)}; "
        f"second reference seasonal-naive z-score (same time yesterday, 7 d of differences): {sz.nab:.1f} "
        f"({sz.detected}/{sz.windows}, {sz.per_1000:.2f} per 1,000), {szb.nab:.1f} at its best (≥ {best[seasonal]}); "
        f"CPU {r.seconds[anju]:.1f} s Anju, {r.seconds[ref] + r.seconds[seasonal]:.2f} s both references\n"
    )
    for family in dict.fromkeys(s.family for s in r.series):
        members = [s for s in r.series if s.family == family]
        shape = next(f for f in r.families if f.name == family)
        kinds = ", ".join(dict.fromkeys(s.kind for s in members))
        fa, fz, fs = (r.outcome(name, THRESHOLD, family) for name in (anju, ref, seasonal))
        fab = r.outcome(anju, best[anju], family)
        fzb = r.outcome(ref, best[ref], family)
        out.write(
            f"  {family} ({shape.step_min} min, {shape.days} d, {len(members)} series: {kinds}): Anju {_brief(fa)}; "
            f"rolling z {_brief(fz)}; seasonal-naive z {_brief(fs)}; at best thresholds Anju {fab.nab:.1f}, "
            f"rolling z {fzb.nab:.1f}\n"
        )


def main() -> None:
    report(run())


if __name__ == "__main__":
    main()
