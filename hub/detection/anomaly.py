"""Streaming anomaly scores for series without a fixed set point, per sensor, vectorised across sensors.

For water use of an elder living alone, the current of a charging point, pump pressure, basement humidity,
temperature trends: the detector learns each sensor's normal behaviour from its own readings and scores how far
each new reading departs from it, in [0, 1], with what was expected and why. A decision at time t uses only the
sensor's readings up to t; the same readings in the same order always give the same scores.

Per sensor and reading, constant time and memory (a few dozen numbers, 24 hour-of-day and 7 day-of-week terms, and
the day totals below: 24 × 6 by hour of day and 24 × 7 by hour of week):

- Four one-step forecasts compete: the last value, a fast and a slow exponentially weighted mean, and a seasonal
  forecast (additive level + hour-of-day + day-of-week profile, Holt–Winters style, in the community's local
  time; the day-of-week terms learn only once the day's shape may be used, else a first day's learning comes back
  a week later as a level shift). Each keeps the mean absolute error of its forecasts; the one with the smallest
  error so far is *the expectation*, and its error the *typical deviation*. A random-walk temperature ends up on the
  last value, a noisy flat level on the slow mean, a daily rhythm on the seasonal forecast (allowed once two days
  are seen).
- Five departures are measured, each scaled so that 1 is notable:
  ``spike``     the reading against the forecast that explains it best, in that forecast's typical
                deviations (÷ ``spike_z``): a reading any forecast explains is no spike;
  ``shift``     a two-sided CUSUM of the seasonal forecast's standardised errors (÷ ``cusum_h``): a level shift
                accumulates until it is notable;
  ``variance``  recent against long-run size of the errors (and of the steps from reading to reading: a ramp is no
                noise grown): noise grown ``variance_ratio``-fold, or a series gone flat (``flat_ratio``-fold
                smaller). The long-run sizes learn slowly (``scale_rate``; by hour of day for the seasonal forecast)
                and not while the variance is past its percentile, so grown noise is judged against the noise from
                before it. A series resting at the lowest or highest value it has read is not "gone flat": a dry
                basement's depth clamped at 0 and quantised to the millimetre repeats 0 for as long as it is dry;
                stuck is still at a value the series usually passes through;
  ``drift``     a medium-term mean against the long-term one, in long-term standard deviations (÷ ``drift_z``; the
                deviation learnt slowly, from readings clipped at ``scale_clip`` of it, not while drifting);
  ``activity``  usual activity that does not come (an elder's water use that stops; a holiday's empty office):
                the day's total since local midnight (the time integral of the readings), judged at each hour's
                end against its usual value by that hour, in how much days differ by then (÷ ``activity_z``).
                Lumpy use differs from day to day reading by reading, hardly in what a morning adds up to; and a
                light morning still adds up to something, while a missed one stays at nothing, hour after hour.
                Totals are compared on a square-root scale (a total of bursts spreads with its size, as a count:
                a morning at nothing is then twice as far below a light morning as that is below a usual one; a
                series far from 0 is compared as it is). The usual totals and spreads are learnt once a day
                (``activity_rate``), so a sensor read every minute learns them as one read hourly; a spread is
                never taken below what the readings' own typical errors give the total (a few days that happened
                to agree do not make a light day an alarm). A day departs only if it also departs from the same
                day a week before (or only from that, where the week has a rhythm: Saturdays, Sundays) and from
                the day before (a warm spell is no departure). Judged only for sensors with a daily rhythm (their
                seasonal forecast long better than a flat mean) and readings at most ``activity_step_ms`` apart.
- Each departure ``R`` is weighed against the sensor's own history of it: ``q`` tracks its 99th percentile
  (stochastic approximation, never below 1), and its score is ``1 - exp(-2 (R / q - 1))`` above ``q``, 0 below;
  the reading's score is the largest. A sensor with heavy-tailed noise thus needs a larger spike for the same
  score, and a spiky one still scores a shift as any other. ``q`` learns outside episodes (a departure staying past
  it) and from an episode only as it ends — by as much as each of its readings past ``q`` would have raised it, at
  most to its peak, and at least by the square root of its peak — so a departure growing reading by reading is
  judged against the percentile it began past, not one that chases it. An episode scores as it begins, on growing
  ``episode_growth``-fold, and as its score first passes 0.5 and ``episode_told`` (the hub alerts at 0.8).
- After a notable shift the baselines move to the new level, so one change gives one burst of high scores, not
  a score that stays high until the slow means catch up. After an alarm of the day's total (or a level shift), the
  day is spent: its total is not judged again that day (nor the CUSUM, after missing activity: the same cause),
  and a next day that departs the same way is the new usual (the usual totals move to it, without an alarm).

Readings that are not judged get score 0 and say why: the first ``warmup`` readings of a sensor (nothing learnt
yet), a reading not newer than the sensor's newest (out of order or repeated: neither judged nor learnt), a value
that is not finite (NaN, ±inf: skipped). A gap is only a longer step: the model carries on (a sensor that reports
once a day simply takes ``warmup`` days to be judged).

Vectorisation: readings of many sensors are processed in *waves* — the k-th reading (in time order) of every
sensor present forms wave k — so each wave is a handful of numpy operations over distinct sensors. The live hub
sends rounds of many sensors; ``anju-hub score`` sends one sensor's CSV through the same ``score`` method.
"""

from dataclasses import dataclass
from enum import IntEnum
from typing import Self

import numpy as np
import numpy.typing as npt

__all__ = ["AnomalyConfig", "AnomalyDetector", "Reason", "Scores", "explain", "reason_text"]

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_EPOCH_WEEKDAY = 3
"""1970-01-01 was a Thursday: day-of-week index (Monday 0) of epoch day 0."""


class Reason(IntEnum):
    """Why a reading got its score: the largest departure, or why it was not judged."""

    NONE = 0
    SPIKE = 1
    SHIFT = 2
    VARIANCE = 3
    DRIFT = 4
    WARMUP = 5
    OUT_OF_ORDER = 6
    NOT_FINITE = 7
    ACTIVITY = 8
    TOO_SOON = 9


_REASON_TEXT = {
    Reason.NONE: ("正常", "normal"),
    Reason.SPIKE: ("突变", "spike"),
    Reason.SHIFT: ("水平偏移", "level shift"),
    Reason.VARIANCE: ("波动异常", "change in variability"),
    Reason.DRIFT: ("缓慢漂移", "slow drift"),
    Reason.WARMUP: ("学习中", "still learning"),
    Reason.OUT_OF_ORDER: ("时间乱序或重复，未评估", "out of order or repeated, not judged"),
    Reason.NOT_FINITE: ("非有限数值，未评估", "not a finite number, not judged"),
    Reason.TOO_SOON: (
        "距上次评估不足最小间隔，未评估",
        "within the minimum interval of the last judged reading, not judged",
    ),
    Reason.ACTIVITY: (
        "当日累计偏离往常（应有活动缺失，或水平偏移）",
        "the day's total so far departs from the usual (usual activity missing, or a level shift)",
    ),
}


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """Learning rates are per reading (a sensor's own pace); thresholds are in the units the docstring gives."""

    warmup: int = 30
    """Readings learnt before any is judged."""
    min_interval_ms: int = 1_000
    """At most one reading of a sensor is judged per interval of this many ms (the first finite one): a rhythm of
    hours and days gains nothing from ten readings a second, and a fast detector costs the hub no more than a slow
    one. Its every reading still meets the set points (rules)."""
    fast: float = 0.5
    """Weight of the newest reading in the fast mean."""
    slow: float = 0.1
    """Weight of the newest reading in the slow mean."""
    error_rate: float = 0.02
    """Learning rate of each forecast's mean absolute error (~50 readings)."""
    choice_rate: float = 0.005
    """Learning rate of the errors that choose the expectation (~200 readings: a quiet afternoon does not make
    "no change" the expectation of a sensor that is busy every evening)."""
    level_window_ms: float = DAY_MS
    """Time constant of the seasonal forecast's level: slower than the day it models, so a morning without
    activity is not mistaken for a lower level by noon."""
    """Learning rate of the seasonal forecast's level."""
    hour_rate: float = 0.1
    """Learning rate of an hour-of-day term, per reading in that hour."""
    weekday_rate: float = 0.02
    """Learning rate of a day-of-week term, per reading on that day."""
    season_after_ms: int = 2 * DAY_MS
    """The seasonal forecast may be the expectation once a sensor's readings span this long."""
    spike_z: float = 4.0
    """Typical deviations from the expectation that count as notable."""
    cusum_k: float = 1.0
    """CUSUM allowance, in typical deviations per reading."""
    cusum_h: float = 12.0
    """CUSUM decision level, in typical deviations."""
    activity_rate: float = 0.1
    """Learning rate, per day, of the usual total by each hour of the day and of its spread (~10 days)."""
    activity_days: int = 4
    """Days an hour's usual total has learnt from before a day's total by that hour is judged."""
    activity_step_ms: int = HOUR_MS
    """A step between readings longer than this leaves the day's total unknown: not judged until the next day."""
    activity_z: float = 4.0
    """A day's total by an hour this many typical spreads from its usual value is notable."""
    hold_ms: float = 6 * HOUR_MS
    """After a scored shift, how long shifts and missing activity are not scored again: the levels adapt
    meanwhile, and one change gives one alarm."""
    short_rate: float = 0.2
    """Learning rate of the recent error size (variance) and of the short mean."""
    variance_ratio: float = 4.0
    """Recent error size this many times the long-run one is notable."""
    flat_ratio: float = 20.0
    """Recent error size this many times smaller than the long-run one is notable (a series gone flat)."""
    mid_rate: float = 0.02
    """Learning rate of the medium-term mean (drift)."""
    long_rate: float = 0.002
    """Learning rate of the long-term mean and variance (drift)."""
    drift_z: float = 4.0
    """Long-term standard deviations between the medium- and long-term means that count as notable."""
    scale_rate: float = 0.0002
    """Learning rate of the long-run scales of the variance and the drift (``long_error``, ``long_var``; ~2,000
    readings): slower than what they judge (the short-run error size, ~5 readings; the medium-term mean, ~50), so a
    change is judged against the scale from before it."""
    hour_scale_rate: float = 0.01
    """Learning rate of the seasonal forecast's long-run error by hour (``hour_scales``), per reading in that hour
    (~100 readings of each hour: days, against ``hour_rate``'s hours)."""
    scale_clip: float = 2.0
    """The drift's long-run scale (``long_var``) learns from a reading at most this many of its own standard deviations
    away: a level drifting moves it by a small fraction per reading, so it stays the yardstick of what is judged."""
    steepness: float = 2.0
    """How fast the score rises past the sensor's own percentile: ``1 - exp(-steepness (R / q - 1))``."""
    episode_growth: float = 1.25
    """While a departure stays past its percentile, it scores again only on growing this many times its peak."""
    episode_told: float = 0.8
    """An episode that grows a little at each reading scores again as its score first passes one half and this (the
    hub alerts at 0.8), not at each step of ``episode_growth``."""
    quantile: float = 0.99
    """The percentile of departures the calibration tracks."""
    quantile_step: float = 0.05
    """Relative step of the percentile tracker on an exceedance."""
    utc_offset_ms: int = 8 * HOUR_MS
    """Local time of the hour-of-day and day-of-week terms (the hub: China Standard Time, UTC+8)."""

    def __post_init__(self) -> None:
        rates = ("fast", "slow", "error_rate", "choice_rate", "hour_rate", "weekday_rate", "short_rate", "mid_rate",
                 "long_rate", "quantile_step", "activity_rate", "scale_rate", "hour_scale_rate")  # fmt: skip
        for name in rates:
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"AnomalyConfig.{name} must be within (0, 1], got {value!r}")
        above_one = (
            "spike_z",
            "cusum_h",
            "variance_ratio",
            "flat_ratio",
            "drift_z",
            "steepness",
            "activity_z",
            "scale_clip",
        )
        for name in (*above_one, "episode_growth"):
            if not getattr(self, name) > 1.0:
                raise ValueError(f"AnomalyConfig.{name} must be above 1, got {getattr(self, name)!r}")
        if not 0.0 < self.episode_told < 1.0:
            raise ValueError(f"AnomalyConfig.episode_told must be within (0, 1), got {self.episode_told!r}")
        if not 0.5 < self.quantile < 1.0:
            raise ValueError(f"AnomalyConfig.quantile must be within (0.5, 1), got {self.quantile!r}")
        if self.warmup < 2:
            raise ValueError(f"AnomalyConfig.warmup must be at least 2, got {self.warmup!r}")
        if self.min_interval_ms < 1:
            raise ValueError(f"AnomalyConfig.min_interval_ms must be at least 1, got {self.min_interval_ms!r}")
        if self.activity_days < 2:
            raise ValueError(f"AnomalyConfig.activity_days must be at least 2, got {self.activity_days!r}")
        if self.activity_step_ms < 1:
            raise ValueError(f"AnomalyConfig.activity_step_ms must be at least 1, got {self.activity_step_ms!r}")


@dataclass(frozen=True, slots=True)
class Scores:
    """One entry per reading given to ``score``, in the same order."""

    score: npt.NDArray[np.float64]
    """In [0, 1]: 0 normal (or not judged), towards 1 ever more unusual for this sensor."""
    expected: npt.NDArray[np.float64]
    """The expectation before the reading (NaN when not judged)."""
    typical: npt.NDArray[np.float64]
    """The typical absolute deviation from the expectation, same unit (NaN when not judged)."""
    reason: npt.NDArray[np.int8]
    """``Reason`` of each score."""
    seen: npt.NDArray[np.float64] | None = None
    """What was compared with ``expected``: the reading, or for ``ACTIVITY`` the day's mean reading since local midnight
    (and ``expected`` / ``typical`` its usual value by that hour and how much days differ by then). None: the
    reading."""


_FORECASTS = 4  # last value, fast mean, slow mean, seasonal
_DEPARTURES = 5  # spike, shift, variance, drift, activity
_REASONS = np.array([Reason.SPIKE, Reason.SHIFT, Reason.VARIANCE, Reason.DRIFT, Reason.ACTIVITY], np.int8)
_SEASONAL = 3
_DAY_STATE = (
    "hour_end_ms", "quiet_until_ms", "day_total", "day_noise", "hour_stats", "activity", "activity_seen",
    "activity_usual", "activity_spread", "spent_day", "spent_sign", "today_totals", "today_day", "week_totals",
    "week_days",
)  # fmt: skip
"""The day totals' state (``activity``)."""
_FLOAT_STATE = (
    "first_ms", "last", "fast", "slow", "level", "error", "choice", "short_error", "cusum_up", "cusum_down", "short",
    "mid", "long", "long_var", "q", "hours", "hour_errors", "hour_visits", "weekdays", "hold_until_ms", "peak",
    "long_error", "hour_scales", "short_steps", "long_steps", "owed", "lowest", "highest", *_DAY_STATE,
)  # fmt: skip
_SQRT2 = np.sqrt(2.0)
_HOURS_TO_END = np.arange(1.0, 25.0)
"""Hours from midnight to the end of each hour of the day (the usual totals' slots)."""
_STARTED_STATE = {
    **dict.fromkeys(("day_total", "activity_seen", "spent_day", "today_totals", "today_day", "week_totals"), np.nan),
    "week_days": np.nan,
    "long_error": np.nan,
    "hour_scales": np.nan,
    "long_steps": np.nan,
    "lowest": np.inf,
    "highest": -np.inf,
}
"""State that a state saved before it existed lacks starts as a new sensor's (these where not 0): the day totals', and
the variance's long-run error sizes (NaN: not yet known, taken from the typical errors when next used)."""
_LATER_STATE = (*_DAY_STATE, "long_error", "hour_scales", "short_steps", "long_steps", "owed", "lowest", "highest")
"""State names a state saved by an older version may lack."""


class AnomalyDetector:
    """Per-sensor state in arrays indexed by the sensor's row (the registry's ``SensorInfo.index``)."""

    def __init__(self, config: AnomalyConfig | None = None) -> None:
        self.config = config or AnomalyConfig()
        self.seen = np.zeros(0, np.int64)
        """Readings learnt per sensor."""
        self.newest_ms = np.zeros(0, np.int64)
        self.first_ms = np.zeros(0, np.float64)
        self.last = np.zeros(0)
        self.fast = np.zeros(0)
        self.slow = np.zeros(0)
        self.level = np.zeros(0)
        self.error = np.zeros((0, _FORECASTS))
        self.choice = np.zeros((0, _FORECASTS))
        """The forecasts' mean absolute errors over a longer run (``choice_rate``): which one is the expectation."""
        self.short_error = np.zeros(0)
        self.cusum_up = np.zeros(0)
        self.cusum_down = np.zeros(0)
        self.short = np.zeros(0)
        self.mid = np.zeros(0)
        self.long = np.zeros(0)
        self.long_var = np.zeros(0)
        """The long-term variance of the readings about ``long`` (unit²), the drift's scale: learnt at ``scale_rate``
        from deviations clipped at ``scale_clip`` of its own standard deviations (or of the expectation's typical
        deviation, if larger: a scale learnt from a still start, 0, still grows), and not while the drift is past its
        percentile (a drift must not become its own yardstick)."""
        self.long_error = np.zeros(0)
        """The long-run mean absolute error of the expectation (unit; NaN: not yet known), the variance's scale where
        the expectation is not the seasonal forecast: learnt at ``scale_rate``, and not while the variance is past its
        percentile (grown noise must not become its own yardstick)."""
        self.q = np.zeros((0, _DEPARTURES))
        self.peak = np.zeros((0, _DEPARTURES))
        """While a departure stays past ``q`` (an episode), the largest it reached; 0 outside an episode."""
        self.owed = np.zeros((0, _DEPARTURES))
        """While an episode goes on, the log of the factor its percentile rises by as it ends: ``quantile_step`` for
        each of its readings past ``q`` (as if it had learnt from each), but at most to the episode's peak."""
        self.hold_until_ms = np.zeros(0)
        """After a scored shift, shift and activity departures are not scored again before this time (Unix ms)."""
        self.hour_end_ms = np.zeros(0)
        """The end of the local hour of the sensor's newest reading (Unix ms): a reading at or past it ends an hour."""
        self.quiet_until_ms = np.zeros(0)
        """After an activity alarm, level shifts are not counted before the day's end (Unix ms): the same departure."""
        self.day_total = np.zeros(0)
        """The local day's total so far, from local midnight to the newest reading: the time integral of the readings
        (unit × hours; NaN: not comparable today — a gap, an alarm that spent the day, the sensor's first day)."""
        self.day_noise = np.zeros(0)
        """The sum of the day's readings' squared typical errors × their hours: the least spread of its total."""
        self.hour_stats = np.zeros((0, 24, 5))
        """By each hour's end (01:00 … 24:00), learnt once a day (``activity_rate``): the usual day's total so far (on
        a square-root scale: a total of bursts spreads with its size), how much days differ from it by then, the days
        learnt from, how much a day differs from the same day a week before, and the days that learnt from."""
        self.activity = np.zeros(0)
        """The activity departure judged at the latest hour's end (÷ ``activity_z``; negative: short of the usual),
        scored until the next one."""
        self.activity_seen = np.zeros(0)
        """At the latest hour's end: the day's mean reading since midnight (unit; NaN: not comparable), """
        self.activity_usual = np.zeros(0)
        """its usual value, """
        self.activity_spread = np.zeros(0)
        """and its typical departure (for the explanation)."""
        self.today_totals = np.zeros((0, 24))
        """The day's total by each hour's end so far (NaN: not known), """
        self.today_day = np.zeros(0)
        """of this local day (days since 1970-01-01)."""
        self.week_totals = np.zeros((0, 7 * 24))
        """The totals of the latest day of each weekday kept (Monday 01:00 … Sunday 24:00; NaN: not known), """
        self.week_days = np.zeros((0, 7))
        """and which day each is (NaN: none)."""
        self.spent_day = np.zeros(0)
        """The local day (days since 1970-01-01) whose total was spent by an alarm (NaN: none), """
        self.spent_sign = np.zeros(0)
        """and which: +1 / -1 its total above / below the usual (activity), +2 / -2 a level shift up / down, +3 / -3 a
        day that went on departing so (the usual totals moved to it)."""
        self.hours = np.zeros((0, 24))
        self.hour_errors = np.zeros((0, 24))
        """The seasonal forecast's mean absolute error by hour of day: water use is lumpy at 7:00, not at 3:00."""
        self.hour_scales = np.zeros((0, 24))
        """The seasonal forecast's long-run mean absolute error by hour of day (NaN: not yet known), the variance's
        scale where the expectation is the seasonal forecast: learnt as ``hour_errors`` but at ``hour_scale_rate``,
        and not while the variance is past its percentile."""
        self.lowest = np.zeros(0)
        """The lowest value the sensor has read (unit; +inf: not yet known): resting there is no series gone flat, """
        self.highest = np.zeros(0)
        """nor at the highest (-inf: not yet known)."""
        self.short_steps = np.zeros(0)
        """The recent mean absolute step from reading to reading (unit; ``short_rate``), """
        self.long_steps = np.zeros(0)
        """and its long-run value (NaN: not yet known), learnt as ``long_error``: noise grown is grown for both."""
        self.hour_visits = np.zeros((0, 24))
        """Readings each hour term has learnt from (weighted): its first ones are averaged, not forgotten."""
        self.weekdays = np.zeros((0, 7))

    # -- state ------------------------------------------------------------------------------------------------

    def _grow(self, size: int) -> None:
        have = len(self.seen)
        if size <= have:
            return
        size = max(size, 2 * have)
        extra = size - have
        self.seen = np.concatenate([self.seen, np.zeros(extra, np.int64)])
        self.newest_ms = np.concatenate([self.newest_ms, np.full(extra, np.iinfo(np.int64).min, np.int64)])
        for name in _FLOAT_STATE:
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.zeros((extra, *old.shape[1:]))]))

    def state(self) -> dict[str, npt.NDArray[np.generic]]:
        """Every learnt number, as arrays (``np.savez`` them); ``restore`` takes them back after a restart."""
        names = ("seen", "newest_ms", *_FLOAT_STATE)
        return {name: getattr(self, name).copy() for name in names}

    @classmethod
    def restore(cls, state: dict[str, npt.NDArray[np.generic]], config: AnomalyConfig | None = None) -> Self:
        """A detector that carries on exactly where the one that gave ``state`` stopped."""
        detector = cls(config)
        size = len(state["seen"])
        for name in ("seen", "newest_ms", *_FLOAT_STATE):
            expected = getattr(detector, name)
            if name not in state and name in _LATER_STATE:  # saved before it existed: it starts afresh
                array = np.full((size, *expected.shape[1:]), _STARTED_STATE.get(name, 0.0))
                setattr(detector, name, array)
                continue
            array = np.asarray(state[name])
            if array.shape[1:] != expected.shape[1:] or len(array) != size:
                raise ValueError(f"anomaly state {name!r} has shape {array.shape}, not ({size}, …) as the others")
            setattr(detector, name, array.astype(expected.dtype, copy=True))
        return detector

    # -- scoring ----------------------------------------------------------------------------------------------

    def score(
        self,
        rows: npt.ArrayLike,
        times_ms: npt.ArrayLike,
        values: npt.ArrayLike,
    ) -> Scores:
        """Judge and learn readings: sensor row ``rows[i]`` read ``values[i]`` at ``times_ms[i]`` (Unix ms).

        Readings may come in any order across sensors; each sensor's are taken in time order (ties in the order
        given, the later ones then out of order). Returns one score per reading, in the order given."""
        row = np.asarray(rows, np.intp)
        time_ms = np.asarray(times_ms, np.int64)
        value = np.asarray(values, np.float64)
        n = len(row)
        if not len(time_ms) == len(value) == n:
            raise ValueError("rows, times_ms and values differ in length")
        out = Scores(np.zeros(n), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, np.int8), np.full(n, np.nan))
        if n == 0:
            return out
        if row.min() < 0:
            raise ValueError("sensor rows must be >= 0")
        self._grow(int(row.max()) + 1)
        order = np.lexsort((time_ms, row))
        order = self._thin(order, row, time_ms, value, out)
        n = len(order)
        if n == 0:
            return out
        sorted_rows = row[order]
        starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        lengths = np.diff(np.r_[starts, n])
        rank = np.arange(n) - np.repeat(starts, lengths)
        if int(lengths.max()) == 1:
            self._wave(row[order], time_ms[order], value[order], order, out)
            return out
        by_rank = np.argsort(rank, kind="stable")
        bounds = np.searchsorted(rank[by_rank], np.arange(int(lengths.max()) + 1))
        for k in range(len(bounds) - 1):
            at = order[by_rank[bounds[k] : bounds[k + 1]]]
            self._wave(row[at], time_ms[at], value[at], at, out)
        return out

    def _thin(
        self,
        order: npt.NDArray[np.intp],
        row: npt.NDArray[np.intp],
        time_ms: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        out: Scores,
    ) -> npt.NDArray[np.intp]:
        """Of readings in (sensor, time) ``order``, those to judge: finite ones newer than their sensor's newest and
        first in their ``min_interval_ms`` (the rest get OUT_OF_ORDER or TOO_SOON here), and every non-finite one
        (the wave says NOT_FINITE or OUT_OF_ORDER). Returns them, still in (sensor, time) order."""
        interval = self.config.min_interval_ms
        rows, times = row[order], time_ms[order]
        finite = np.isfinite(value[order])
        newest = self.newest_ms[rows]
        repeated = np.r_[False, (rows[1:] == rows[:-1]) & (times[1:] == times[:-1])]
        late = finite & ((times <= newest) | repeated)
        at = np.flatnonzero(finite & ~late)
        if len(at) == 0:
            out.reason[order[late]] = Reason.OUT_OF_ORDER
            return order[~finite]
        fr, fb = rows[at], times[at] // interval
        first = np.r_[True, (fr[1:] != fr[:-1]) | (fb[1:] != fb[:-1])]
        chosen = first & (fb > newest[at] // interval)
        keep = ~finite
        keep[at[chosen]] = True
        out.reason[order[late]] = Reason.OUT_OF_ORDER
        out.reason[order[at[~chosen]]] = Reason.TOO_SOON
        return order[keep]

    def _wave(
        self,
        row: npt.NDArray[np.intp],
        time_ms: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        at: npt.NDArray[np.intp],
        out: Scores,
    ) -> None:
        """One reading each of distinct sensors ``row``: score into ``out`` at ``at``, then learn."""
        c = self.config
        finite = np.isfinite(value)
        fresh = time_ms > self.newest_ms[row]
        out.reason[at[~fresh]] = Reason.OUT_OF_ORDER
        out.reason[at[fresh & ~finite]] = Reason.NOT_FINITE
        take = fresh & finite
        if not take.all():
            row, time_ms, value, at = row[take], time_ms[take], value[take], at[take]
            if not len(row):
                return
        seen = self.seen[row]
        new = seen == 0
        if new.any():
            self._start(row[new], time_ms[new], value[new])
            out.reason[at[new]] = Reason.WARMUP
            old = ~new
            row, time_ms, value, at, seen = row[old], time_ms[old], value[old], at[old], seen[old]
            if not len(row):
                return
        local = time_ms + c.utc_offset_ms
        # The hour-of-day term is interpolated between the two nearest hour centres: a smooth daily curve, not
        # 24 steps whose edges would look like small level shifts to the CUSUM.
        position = ((local - HOUR_MS // 2) % DAY_MS) / HOUR_MS
        hour = position.astype(np.intp)
        after = (hour + 1) % 24
        weight = position - hour
        weekday = (local // DAY_MS + _EPOCH_WEEKDAY) % 7
        hours = (1.0 - weight) * self.hours[row, hour] + weight * self.hours[row, after]
        hour_errors = (1.0 - weight) * self.hour_errors[row, hour] + weight * self.hour_errors[row, after]
        weekdays = self.weekdays[row, weekday]
        level = self.level[row]
        forecasts = np.stack([self.last[row], self.fast[row], self.slow[row], level + hours + weekdays], axis=1)
        residuals = value[:, None] - forecasts
        error = self.error[row]
        seasonal_ok = (time_ms - self.first_ms[row]) >= c.season_after_ms
        choice = self.choice[row]
        choosable = choice.copy()
        choosable[~seasonal_ok, _SEASONAL] = np.inf
        best = np.argmin(choosable, axis=1)
        pick = np.arange(len(row))
        expected = forecasts[pick, best]
        # The seasonal forecast's typical error is that of the hour (at least a quarter of its overall one).
        seasonal_typical = np.maximum(hour_errors, 0.25 * error[:, _SEASONAL])
        typical = np.where(best == _SEASONAL, seasonal_typical, error[pick, best])
        floor = 1e-9 * (1.0 + np.abs(self.long[row]))
        # A spike is a reading that no forecast explains: the smallest departure over the forecasts. (A lumpy
        # series is explained by its hour of day, a random walk by its last value.)
        typicals = error.copy()
        typicals[:, _SEASONAL] = seasonal_typical
        z_each = np.abs(residuals) / (1.25 * typicals + floor[:, None])
        z_each[~seasonal_ok, _SEASONAL] = np.inf
        spike = z_each.min(axis=1)

        judged = seen >= c.warmup
        baseline = np.where(seasonal_ok & (error[:, _SEASONAL] < error[:, 2]), _SEASONAL, 2)
        base_typical = np.where(baseline == _SEASONAL, seasonal_typical, error[pick, baseline])
        z_base = residuals[pick, baseline] / (1.25 * base_typical + floor)
        counting = judged & seasonal_ok  # before that the baseline's errors are mostly its own learning
        # On a day whose total has departed (an activity alarm), the readings that made it depart are no level shift.
        shifting = counting & (time_ms >= self.quiet_until_ms[row])
        up = np.where(shifting, np.maximum(0.0, self.cusum_up[row] + z_base - c.cusum_k), 0.0)
        down = np.where(shifting, np.maximum(0.0, self.cusum_down[row] - z_base - c.cusum_k), 0.0)
        shift = np.maximum(up, down) / c.cusum_h
        q = np.maximum(self.q[row], 1.0)
        since = (time_ms - self.newest_ms[row]).astype(np.float64)
        # A reading no forecast explains counts in the day's total as the most its expectation allows: one spike, one
        # alarm (not a second one for the day's total).
        usual = value
        clipped = np.flatnonzero(counting & (spike > c.spike_z * q[:, 0]))
        if len(clipped):
            usual = value.copy()
            bound = c.spike_z * q[clipped, 0] * 1.25 * typical[clipped]
            usual[clipped] = np.clip(value[clipped], expected[clipped] - bound, expected[clipped] + bound)
        # Usual activity is judged where the sensor has a daily rhythm: where its seasonal forecast has long done better
        # than a flat mean (a random walk's days differ by its walk, not by what they usually hold).
        rhythmic = judged & seasonal_ok & (choice[:, _SEASONAL] < choice[:, 2])
        missing = self._day_totals(row, time_ms, usual, seasonal_typical, rhythmic, q[:, 4])

        # The recent error size counts a reading no forecast explains as the most its expectation allows: a spike or a
        # step is told as such, not as noise grown.
        size = np.minimum(np.abs(residuals[pick, best]), c.spike_z * q[:, 0] * 1.25 * typical)
        short_error = self.short_error[row] + c.short_rate * (size - self.short_error[row])
        # The long-run error size: the hour's typical error for the seasonal forecast (learnt per hour, slowly per
        # reading); else the slowly learnt ``long_error`` (the forecasts' own errors learn in ~50 readings: a noise
        # grown five-fold would be their new normal before the short-run error had shown it).
        long_error = self.long_error[row]
        long_error = np.where(np.isnan(long_error), typical, long_error)
        hour_scale, after_scale = self.hour_scales[row, hour], self.hour_scales[row, after]
        hour_scale = np.where(np.isnan(hour_scale), self.hour_errors[row, hour], hour_scale)
        after_scale = np.where(np.isnan(after_scale), self.hour_errors[row, after], after_scale)
        hour_scales = (1.0 - weight) * hour_scale + weight * after_scale
        reference = np.where(best == _SEASONAL, np.maximum(hour_scales, 0.25 * long_error), long_error)
        # Noise grown is grown for the last value too: a level moving (a ramp) grows the expectation's errors, hardly
        # the steps from reading to reading. (Steps compared with their own long-run size; a spike's counted as the
        # most the last value allows.)
        steps = np.abs(residuals[:, 0])
        long_steps = self.long_steps[row]
        long_steps = np.where(np.isnan(long_steps), error[:, 0], long_steps)
        steps = np.minimum(steps, c.spike_z * q[:, 0] * 1.25 * error[:, 0])
        short_steps = self.short_steps[row] + c.short_rate * (steps - self.short_steps[row])
        ratio = np.minimum((short_error + floor) / (reference + floor), (short_steps + floor) / (long_steps + floor))
        # Gone flat: flatter than the smaller of the long-run and the recent typical error size.
        usual_least = np.minimum(reference, typical)
        flat = (short_error + floor) / (usual_least + floor)
        # (Gone flat is judged once the seasonal forecast may be the expectation: before a sensor's days are known, a
        # quiet night is no series gone flat.)
        # A series resting at the lowest (or highest) value it has read is at rest, not stuck: a dry basement's depth
        # at 0, an empty tank, a valve shut (a reading clamped at its physical limit, or quantised down to it, repeats
        # for as long as it rests there). Stuck is still at a value the series usually passes through.
        lowest, highest = self.lowest[row], self.highest[row]
        at_rest = (value - lowest <= floor) | (highest - value <= floor)
        flat_departure = np.where(seasonal_ok & ~at_rest, -np.log(flat) / np.log(c.flat_ratio), 0.0)
        variance = np.maximum((ratio - 1.0) / (c.variance_ratio - 1.0), flat_departure)

        long, long_var = self.long[row], self.long_var[row]
        mid = self.mid[row] + c.mid_rate * (value - self.mid[row])
        drift = np.abs(mid - long) / (np.sqrt(long_var) + floor) / c.drift_z

        holding = time_ms < self.hold_until_ms[row]
        # While a scored shift holds, neither the shift nor the drift its means then show is scored again.
        held = np.where(holding[:, None], 0.0, np.stack([shift, drift], axis=1))
        departures = np.stack([spike / c.spike_z, held[:, 0], variance, held[:, 1], missing], axis=1)
        relative = departures / q
        # An episode (a departure staying past q) scores when it begins, and again only when it has grown by
        # ``episode_growth`` past its peak, or as its score first passes one half and ``episode_told``: a few alarms
        # per episode, not one per reading of a flat stretch, and one that grows a little at each reading (a series
        # gone flat, a ramp, a drift) is told when it has become notable and when it has become clear.
        peak = self.peak[row]
        half = 1.0 + np.log(2.0) / c.steepness  # the relative that scores one half
        told = 1.0 - np.log1p(-c.episode_told) / c.steepness  # and ``episode_told``
        growing = relative > c.episode_growth * peak
        growing |= ((peak < half) & (relative >= half)) | ((peak < told) & (relative >= told))
        news = np.where((relative > 1.0) & growing, relative, 0.0)
        strongest = np.argmax(news, axis=1)
        worst = news[pick, strongest]
        score = np.where(judged & (worst > 1.0), 1.0 - np.exp(-c.steepness * (worst - 1.0)), 0.0)
        out.score[at] = score
        out.expected[at] = np.where(judged, expected, np.nan)
        out.typical[at] = np.where(judged, typical, np.nan)
        reason = np.where(judged, np.where(score > 0, _REASONS[strongest], Reason.NONE), Reason.WARMUP)
        out.reason[at] = reason
        if out.seen is not None:
            out.seen[at] = np.where(judged, value, np.nan)
        by_day = np.flatnonzero(reason == Reason.ACTIVITY)
        if len(by_day):
            if out.seen is not None:
                out.seen[at[by_day]] = self.activity_seen[row[by_day]]
            out.expected[at[by_day]] = self.activity_usual[row[by_day]]
            out.typical[at[by_day]] = self.activity_spread[row[by_day]]

        # Learn. Early on the rates are at least 1/n, so the first readings are averaged rather than forgotten.
        count = (seen + 1).astype(np.float64)
        warm = np.maximum(c.error_rate, 1.0 / count)
        self.error[row] = error + warm[:, None] * (np.abs(residuals) - error)
        self.choice[row] = choice + np.maximum(c.choice_rate, 1.0 / count)[:, None] * (np.abs(residuals) - choice)
        self.short_error[row] = short_error
        self.last[row] = value
        self.fast[row] += c.fast * (value - self.fast[row])
        self.slow[row] += np.maximum(c.slow, 1.0 / count) * (value - self.slow[row])
        deseasoned = value - hours - weekdays
        level_rate = np.maximum(-np.expm1(-since / c.level_window_ms), 1.0 / count)
        level = level + level_rate * (deseasoned - level)
        self.level[row] = level
        self.hour_visits[row, hour] += 1.0 - weight
        self.hour_visits[row, after] += weight
        visits = (1.0 - weight) * self.hour_visits[row, hour] + weight * self.hour_visits[row, after]
        hour_rate = np.maximum(c.hour_rate, 1.0 / visits)
        hour_error = hour_rate * (value - level - weekdays - hours)
        self.hours[row, hour] += (1.0 - weight) * hour_error
        self.hours[row, after] += weight * hour_error
        hour_error_step = hour_rate * (np.abs(residuals[:, _SEASONAL]) - hour_errors)
        self.hour_errors[row, hour] += (1.0 - weight) * hour_error_step
        self.hour_errors[row, after] += weight * hour_error_step
        seasonal_size = np.abs(residuals[:, _SEASONAL])
        hour_scale_rate = np.maximum(c.hour_scale_rate, 1.0 / visits)
        hour_scale_rate = np.where(judged & (relative[:, 2] > 1.0), 0.0, hour_scale_rate)
        hour_scale_step = hour_scale_rate * (seasonal_size - hour_scales)
        self.hour_scales[row, hour] = hour_scale + (1.0 - weight) * hour_scale_step
        self.hour_scales[row, after] = after_scale + weight * hour_scale_step
        hours = hours + hour_error
        # The day-of-week terms learn once the day's shape may be used (``season_after_ms``): before that, what the
        # hour terms have yet to learn would be taken for the weekday's, and come back as a level shift a week later.
        weekday_rate = np.where(seasonal_ok, c.weekday_rate, 0.0)
        self.weekdays[row, weekday] = weekdays + weekday_rate * (value - level - hours - weekdays)
        self.short[row] += c.short_rate * (value - self.short[row])
        long_rate = np.maximum(c.long_rate, 1.0 / count)
        deviation = value - long
        self.long[row] = long + long_rate * deviation
        # The long-run scales learn from what is not being flagged: a reading at most ``scale_clip`` of their own sizes
        # away, and nothing while their departure is past its percentile.
        # (Before a sensor is judged, they take its readings whole.)
        scale_rate = np.maximum(c.scale_rate, 1.0 / count)
        scale_rate = np.where(judged[:, None] & (relative[:, 2:4] > 1.0), 0.0, scale_rate[:, None])
        # (Clipped at no less than the expectation's typical deviation: a scale learnt from a still start grows.)
        clip = c.scale_clip * np.maximum(np.sqrt(long_var), 1.25 * typical)
        clipped_dev = np.minimum(np.abs(deviation), clip)
        clipped_dev = np.where(judged, clipped_dev, np.abs(deviation))
        self.long_var[row] = (1.0 - scale_rate[:, 1]) * (long_var + scale_rate[:, 1] * clipped_dev * clipped_dev)
        size = np.abs(residuals[pick, best])
        self.long_error[row] = long_error + scale_rate[:, 0] * (size - long_error)
        self.short_steps[row] = short_steps
        self.lowest[row] = np.minimum(lowest, value)
        self.highest[row] = np.maximum(highest, value)
        size = np.abs(residuals[:, 0])
        self.long_steps[row] = long_steps + scale_rate[:, 0] * (size - long_steps)
        self.mid[row] = mid
        # A shift scored past one half: from now on the new level is the usual one (one change, one burst).
        # (Usual activity missing counts once it has scored past one half: an episode goes on at its first score.)
        notable_shift = judged & (np.maximum(news[:, 1], news[:, 4]) > half)
        # A day whose total has departed (an activity alarm) or that an alarmed level shift has moved is spent: its
        # total is not judged again today. If the next day departs the same way, the usual totals move to it
        # (``_day_totals``): one change, one alarm.
        spent = judged & (np.maximum(news[:, 1], news[:, 4]) > half)
        if spent.any():
            moved = row[spent]
            day_start = local[spent] - local[spent] % DAY_MS
            self.spent_day[moved] = day_start // DAY_MS
            by_activity = news[spent, 4] > half
            self.spent_sign[moved] = np.where(
                by_activity, np.sign(self.activity[moved]), np.where(up > down, 2, -2)[spent]
            )
            self.quiet_until_ms[moved] = np.where(
                by_activity, day_start + (DAY_MS - c.utc_offset_ms), self.quiet_until_ms[moved]
            )
            self.day_total[moved] = np.nan
            self.activity[moved] = 0.0
        up[notable_shift] = 0.0
        down[notable_shift] = 0.0
        self.cusum_up[row] = up
        self.cusum_down[row] = down
        if notable_shift.any():
            moved = row[notable_shift]
            self.hold_until_ms[moved] = time_ms[notable_shift] + c.hold_ms
            # After a level shift (CUSUM) the seasonal shape stays and its level moves by the recent mean error. (Usual
            # activity missing is no new level: the level stays.)
            by_cusum = notable_shift & (relative[:, 1] >= news[:, 4])
            if by_cusum.any():
                moved = row[by_cusum]
                recent = self.short[moved]
                self.level[moved] += recent - (level + hours + weekdays)[by_cusum]
                self.slow[moved] = recent
                # The drift's means start afresh at the new level's reading (the short mean still lags a step): the
                # shift that scored is no drift as well.
                self.mid[moved] = value[by_cusum]
                self.long[moved] = value[by_cusum]
        # The percentile learns outside episodes only, and from an episode once, as it ends: a departure that grows
        # reading by reading is judged against the percentile it began past, not one that chases it.
        step = c.quantile_step
        over = relative > 1.0
        # An episode ends once its departure has fallen ``episode_growth`` times below the percentile (not at a dip
        # just under it: a noise grown five-fold hovers about its notable four-fold).
        ongoing = peak > 0.0
        goes_on = over | (ongoing & (relative * c.episode_growth > 1.0))
        # As one ends, it raises the percentile once, by the step or, for an episode that went far past it, by the
        # square root of how far (a sensor whose every night is "flat" learns that in two nights, not twenty).
        reached = np.maximum(peak, relative)
        owed = np.where(ongoing, self.owed[row], 0.0) + np.where(over, np.log1p(step * c.quantile), 0.0)
        owed = np.minimum(owed, np.log(np.maximum(reached, 1.0)))
        tracked = np.where(
            ongoing & ~goes_on,
            q * np.exp(np.maximum(owed, np.maximum(0.5 * np.log(np.maximum(peak, 1.0)), np.log1p(step * c.quantile)))),
            np.where(goes_on, q, q * (1.0 - step * (1.0 - c.quantile))),
        )
        # A day's total falls short hour by hour: its episode scores again on growing past the score before, so a
        # morning that began a little short and ends with nothing is told when it has become clear.
        reached[:, 4] = np.where(news[:, 4] > 0.0, relative[:, 4], peak[:, 4])
        self.peak[row] = np.where(judged[:, None] & goes_on, reached, 0.0)
        self.owed[row] = np.where(judged[:, None] & goes_on, owed, 0.0)
        self.q[row] = np.where(judged[:, None], tracked, q)
        self.seen[row] = seen + 1
        self.newest_ms[row] = time_ms

    def _day_totals(
        self,
        row: npt.NDArray[np.intp],
        time_ms: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        typical: npt.NDArray[np.float64],
        judged: npt.NDArray[np.bool_],
        q: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """Usual activity that does not come: how far the day's total by the latest hour's end falls short of (or
        exceeds) its usual value by then, in its typical spreads ÷ ``activity_z``. Adds each reading (at ``time_ms``,
        typically off its hour's seasonal expectation by ``typical``) to its local day's total, and at each hour's end
        judges that total, then learns it (``_hour_end``).

        Why totals: lumpy use (an elder's water: a few bursts in the morning and evening, nothing at night) differs
        from day to day far more reading by reading than in what a morning adds up to; a light morning still adds up
        to something, while a morning without use stays at nothing, hour after hour."""
        c = self.config
        previous = self.newest_ms[row]
        since_h = (time_ms - previous) / HOUR_MS
        total, noise = self.day_total[row], self.day_noise[row]
        # A reading stands for the step before it (a meter's use is the use since the previous reading).
        after = total + value * since_h
        error = typical * since_h
        noise = noise + error * error
        crossed = np.flatnonzero(time_ms >= self.hour_end_ms[row])
        if len(crossed):
            x = crossed
            local = time_ms[x] + c.utc_offset_ms
            before = previous[x] + c.utc_offset_ms
            hour_start = local - local % HOUR_MS
            day_start = local - local % DAY_MS
            self.hour_end_ms[row[x]] = hour_start + (HOUR_MS - c.utc_offset_ms)
            new_day = before < day_start
            into_day = local - day_start
            gap = time_ms[x] - previous[x] > c.activity_step_ms
            step_h = np.where(new_day, into_day / HOUR_MS, since_h[x])
            after[x] = np.where(new_day, 0.0, total[x]) + value[x] * step_h
            noise[x] = np.where(new_day, 0.0, noise[x] - error[x] ** 2) + (typical[x] * step_h) ** 2
            if gap.any():
                after[x[gap & ~(new_day & (into_day <= c.activity_step_ms))]] = np.nan
            ended = np.flatnonzero(~gap)  # at most one hour's end in a step of an hour at most: ``hour_start``
            if len(ended):
                e = x[ended]
                piece = (hour_start[ended] - before[ended]) / HOUR_MS
                at_end = total[e] + value[e] * piece
                least = np.sqrt(self.day_noise[row[e]] + (typical[e] * piece) ** 2)
                self._hour_end(row[e], hour_start[ended], at_end, least, q[e])
        self.day_total[row] = after
        self.day_noise[row] = noise
        activity = self.activity[row]
        return np.where(judged, np.abs(activity), 0.0)

    def _hour_end(
        self,
        r: npt.NDArray[np.intp],
        end_ms: npt.NDArray[np.int64],
        at_end: npt.NDArray[np.float64],
        least: npt.NDArray[np.float64],
        q: npt.NDArray[np.float64],
    ) -> None:
        """Judge, then learn, sensor ``r``'s day total ``at_end`` at the end of an hour (local ms ``end_ms``); the
        readings' own typical errors would give it a spread of ``least``."""
        c = self.config
        slot = ((end_ms // HOUR_MS) - 1) % 24  # 01:00 is slot 0, midnight (24:00) slot 23
        day = (end_ms - 1) // DAY_MS
        at_week = ((day + _EPOCH_WEEKDAY) % 7) * 24 + slot
        known = np.isfinite(at_end)
        root = _signed_root(at_end)
        # Against the usual day: the hour's usual total (on the root scale) and how much days differ by then, no less
        # than the readings' own errors allow.
        stats = self.hour_stats[r, slot]
        usual, spread, visits, week_spread, week_visits = stats.T
        usual_total = usual * np.abs(usual)
        least = _signed_root(usual_total + least) - usual
        tiny = 1e-9 * (1.0 + np.abs(usual))
        day_spread = np.maximum(spread, least) + tiny
        daily = np.where(known, root - usual, 0.0)
        # Against the same day a week before (offices close on Saturdays, a family is out on Sundays): where the week's
        # rhythm has told days apart better than the usual day, that is the comparison; elsewhere a day departs only if
        # it departs from both.
        self._keep_day(r, day)
        self.today_totals[r, slot] = at_end
        before = self.week_totals[r, at_week]
        weekly = root - _signed_root(before)
        compared = np.isfinite(weekly)
        week_ready = week_visits >= c.activity_days
        week_judged = np.where(week_ready, np.maximum(week_spread, _SQRT2 * least) + tiny, _SQRT2 * day_spread)
        z_day = daily / (c.activity_z * day_spread)
        z_week = np.where(compared, weekly, np.inf) / (c.activity_z * week_judged)
        by_week = compared & week_ready & (week_spread < spread)  # a weekly rhythm tells days apart by far better
        by_week |= compared & (np.abs(z_week) < np.abs(z_day))
        chosen = np.where(by_week, z_week, z_day)
        # Nor is a day unusual that is like the day before (a warm spell, a busy week): two days' spreads apart. (Not
        # where the week has a rhythm: Saturday is not Friday.)
        day_before = self.week_totals[r, (at_week - 24) % (7 * 24)]
        day_before[self.week_days[r, (day + _EPOCH_WEEKDAY - 1) % 7] != day - 1] = np.nan
        yesterday = root - _signed_root(day_before)
        z_yesterday = np.where(np.isfinite(yesterday), yesterday, np.inf) / (c.activity_z * _SQRT2 * day_spread)
        by_yesterday = ~by_week & (np.abs(z_yesterday) < np.abs(chosen))
        chosen = np.where(by_yesterday, z_yesterday, chosen)
        activity = np.where(known & (visits >= c.activity_days), chosen, 0.0)
        # A departure that goes on into a second day the same way as the one that spent the day before (an activity
        # alarm, or a level shift) is the new usual: every hour's usual total moves by the day's mean departure so far,
        # and nothing is scored for it. (Where a day is held to the same day a week before, the days of that week go on
        # departing so, and the usual moves on with them, without an alarm, until they are the new level's.)
        spent_day, spent_sign = self.spent_day[r], self.spent_sign[r]
        again = (spent_day == day - 1.0) & (np.sign(activity) == np.sign(spent_sign))
        again |= (spent_day == day) & (np.abs(spent_sign) == 3.0)  # the day the usual moved: it moves on to it
        again &= np.abs(activity) > q
        if again.any():
            a = np.flatnonzero(again)
            ra = r[a]
            self.spent_day[ra] = day[a]  # and so on while days go on departing the same way (a week of new Saturdays)
            self.spent_sign[ra] = np.where(spent_day[a] == day[a], spent_sign[a], 3.0 * np.sign(activity[a]))
            moved_by = (at_end[a] - usual_total[a]) / (slot[a] + 1.0)
            totals = self.hour_stats[ra, :, 0]
            self.hour_stats[ra, :, 0] = _signed_root(totals * np.abs(totals) + moved_by[:, None] * _HOURS_TO_END)
            usual[a] = self.hour_stats[ra, slot[a], 0]
            usual_total[a] = usual[a] * np.abs(usual[a])
            daily[a] = 0.0
            weekly[a] = np.nan
            activity[a] = 0.0
        self.activity[r] = activity
        # For the explanation, in the reading's unit: the day's mean since midnight, the one it was compared with and
        # that one's spread.
        hours = (slot + 1).astype(np.float64)
        reference = np.where(by_week, before, np.where(by_yesterday, day_before, usual_total))
        reference_spread = np.where(by_week, week_judged, np.where(by_yesterday, _SQRT2 * day_spread, day_spread))
        self.activity_seen[r] = at_end / hours
        self.activity_usual[r] = reference / hours
        self.activity_spread[r] = (
            (np.abs(_signed_root(reference)) + reference_spread) ** 2 - np.abs(reference)
        ) / hours
        # Learn (a day not comparable teaches nothing). A spread learns from at most ``activity_z`` of itself: a day
        # like no other raises the bar a little, not by all its own departure. A departure from the mean of few days
        # is larger than from the mean of many (by sqrt((n + 1) / n)).
        learnt = np.minimum(visits, 2.0 / c.activity_rate - 1.0)
        size = np.minimum(np.abs(daily), c.activity_z * day_spread) * np.sqrt(learnt / (learnt + 1.0))
        rate = np.where(known & (visits > 0), np.maximum(c.activity_rate, 1.0 / np.maximum(visits, 1.0)), 0.0)
        stats[:, 1] = spread + rate * (size - spread)
        stats[:, 0] = usual + np.where(known, np.maximum(c.activity_rate, 1.0 / (visits + 1.0)), 0.0) * daily
        stats[:, 2] = visits + known
        compared = np.isfinite(weekly)
        size = np.minimum(np.where(compared, np.abs(weekly), 0.0), c.activity_z * week_judged)
        rate = np.where(compared, np.maximum(c.activity_rate, 1.0 / (week_visits + 1.0)), 0.0)
        stats[:, 3] = week_spread + rate * (size - week_spread)
        stats[:, 4] = week_visits + compared
        self.hour_stats[r, slot] = stats

    def _keep_day(self, r: npt.NDArray[np.intp], day: npt.NDArray[np.int64]) -> None:
        """Sensors ``r`` have reached local day ``day``: the day before (its totals by each hour's end) is kept as its
        weekday's, to compare with next week and tomorrow. A day an alarm spent does not replace the same weekday a
        week before (a holiday is no Saturday to hold the next one to), but it fills hours that one does not know, and
        replaces an older one (two such weekdays in a row are the new rhythm)."""
        stale = self.today_day[r] != day
        if not stale.any():
            return
        r, day = r[stale], day[stale]
        kept = self.today_day[r]
        known = np.isfinite(kept) & (kept < day)
        if known.any():
            k, kept = r[known], kept[known]
            weekday = (kept.astype(np.int64) + _EPOCH_WEEKDAY) % 7
            block = weekday[:, None] * 24 + np.arange(24)
            old = self.week_totals[k[:, None], block]
            whole = (self.spent_day[k] != kept) | (np.abs(self.spent_sign[k]) == 3.0)
            whole |= self.week_days[k, weekday] != kept - 7.0
            self.week_totals[k[:, None], block] = np.where(whole[:, None] | np.isnan(old), self.today_totals[k], old)
            self.week_days[k, weekday] = np.where(whole, kept, self.week_days[k, weekday])
        self.today_totals[r] = np.nan
        self.today_day[r] = day

    def _start(self, row: npt.NDArray[np.intp], time_ms: npt.NDArray[np.int64], value: npt.NDArray[np.float64]) -> None:
        """A sensor's first reading: every mean starts at it, every error and profile term at 0."""
        for name in ("last", "fast", "slow", "level", "short", "mid", "long", "lowest", "highest"):
            getattr(self, name)[row] = value
        self.error[row] = 0.0
        self.choice[row] = 0.0
        for name in ("short_error", "cusum_up", "cusum_down", "long_var", "long_error", "short_steps", "long_steps"):
            getattr(self, name)[row] = 0.0
        self.hours[row] = 0.0
        self.hour_errors[row] = 0.0
        self.hour_scales[row] = 0.0
        self.hour_visits[row] = 0.0
        local = time_ms + self.config.utc_offset_ms
        self.hour_end_ms[row] = local - local % HOUR_MS + (HOUR_MS - self.config.utc_offset_ms)
        self.quiet_until_ms[row] = 0.0
        self.day_total[row] = np.nan
        self.day_noise[row] = 0.0
        self.hour_stats[row] = 0.0
        self.activity[row] = 0.0
        self.activity_seen[row] = np.nan
        self.activity_usual[row] = 0.0
        self.activity_spread[row] = 0.0
        self.spent_day[row] = np.nan
        self.spent_sign[row] = 0.0
        self.today_totals[row] = np.nan
        self.today_day[row] = np.nan
        self.week_totals[row] = np.nan
        self.week_days[row] = np.nan
        self.hold_until_ms[row] = 0.0
        self.weekdays[row] = 0.0
        self.q[row] = 1.0
        self.peak[row] = 0.0
        self.owed[row] = 0.0
        self.first_ms[row] = time_ms
        self.seen[row] = 1
        self.newest_ms[row] = time_ms


def _signed_root(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.sign(x) * np.sqrt(np.abs(x))


def reason_text(reason: Reason) -> tuple[str, str]:
    """(Chinese, English) words for ``reason``."""
    return _REASON_TEXT[reason]


def explain(scores: Scores, i: int, unit: str = "") -> str:
    """Reading ``i``'s score in words, Chinese first: what was expected, what departed and how much."""
    reason = Reason(int(scores.reason[i]))
    zh, en = _REASON_TEXT[reason]
    score = float(scores.score[i])
    if np.isnan(scores.expected[i]):
        return f"{zh} / {en}"
    unit_text = f" {unit}" if unit else ""
    expected = f"{float(scores.expected[i]):.4g} ± {float(scores.typical[i]):.2g}{unit_text}"
    if reason == Reason.ACTIVITY and scores.seen is not None:
        seen = f"{float(scores.seen[i]):.4g}{unit_text}"
        return (
            f"{zh}，今日零时以来均值 {seen}，往常此时 {expected}，异常分 {score:.2f} / {en}, "
            f"mean since local midnight {seen}, usual by this hour {expected}, score {score:.2f}"
        )
    return f"{zh}，预期 {expected}，异常分 {score:.2f} / {en}, expected {expected}, score {score:.2f}"
