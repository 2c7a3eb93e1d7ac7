"""Streaming anomaly scores for series without a fixed set point, per sensor, vectorised across sensors.

For water use of an elder living alone, the current of a charging point, pump pressure, basement humidity,
temperature trends: the detector learns each sensor's normal behaviour from its own readings and scores how far
each new reading departs from it, in [0, 1], with what was expected and why. A decision at time t uses only the
sensor's readings up to t; the same readings in the same order always give the same scores.

Per sensor and reading, constant time and memory (a few dozen numbers, plus 24 hour-of-day and 7 day-of-week
terms):

- Four one-step forecasts compete: the last value, a fast and a slow exponentially weighted mean, and a seasonal
  forecast (additive level + hour-of-day + day-of-week profile, Holt–Winters style, in the community's local
  time). Each keeps the mean absolute error of its forecasts; the one with the smallest error so far is *the
  expectation*, and its error the *typical deviation*. A random-walk temperature ends up on the last value, a
  noisy flat level on the slow mean, a daily rhythm on the seasonal forecast (allowed once two days are seen).
- Four departures are measured, each scaled so that 1 is notable:
  ``spike``     the reading against the forecast that explains it best, in that forecast's typical
                deviations (÷ ``spike_z``): a reading any forecast explains is no spike;
  ``shift``     a two-sided CUSUM of the seasonal forecast's standardised errors (÷ ``cusum_h``): a level shift
                accumulates until it is notable; and the time-weighted mean of those errors over the last hours
                against its long-run size (÷ ``activity_z``): usual activity that does not come (water use that
                stops) or comes at an unusual time;
  ``variance``  recent against long-run size of the errors: noise grown ``variance_ratio``-fold, or a series gone
                flat (``flat_ratio``-fold smaller);
  ``drift``     a medium-term mean against the long-term one, in long-term standard deviations (÷ ``drift_z``).
- Each departure ``R`` is weighed against the sensor's own history of it: ``q`` tracks its 99th percentile
  (stochastic approximation, never below 1), and its score is ``1 - exp(-2 (R / q - 1))`` above ``q``, 0 below;
  the reading's score is the largest. A sensor with heavy-tailed noise thus needs a larger spike for the same
  score, and a spiky one still scores a shift as any other.
- After a notable shift the baselines move to the new level, so one change gives one burst of high scores, not
  a score that stays high until the slow means catch up.

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
        "持续偏离日常规律（水平偏移或应有活动缺失）",
        "sustained departure from the usual daily pattern (level shift, or usual activity missing)",
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
    activity_window_ms: float = 12 * HOUR_MS
    """Time constant of the mean seasonal error that measures missing (or extra) usual activity."""
    activity_z: float = 4.0
    """That mean, in its long-run sizes, that counts as notable."""
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
    steepness: float = 2.0
    """How fast the score rises past the sensor's own percentile: ``1 - exp(-steepness (R / q - 1))``."""
    episode_growth: float = 1.3
    """While a departure stays past its percentile, it scores again only on growing this many times its peak."""
    quantile: float = 0.99
    """The percentile of departures the calibration tracks."""
    quantile_step: float = 0.05
    """Relative step of the percentile tracker on an exceedance."""
    utc_offset_ms: int = 8 * HOUR_MS
    """Local time of the hour-of-day and day-of-week terms (the hub: China Standard Time, UTC+8)."""

    def __post_init__(self) -> None:
        rates = ("fast", "slow", "error_rate", "choice_rate", "hour_rate", "weekday_rate", "short_rate",
                 "mid_rate", "long_rate", "quantile_step")  # fmt: skip
        for name in rates:
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"AnomalyConfig.{name} must be within (0, 1], got {value!r}")
        above_one = ("spike_z", "cusum_h", "variance_ratio", "flat_ratio", "drift_z", "steepness", "activity_z")
        for name in (*above_one, "episode_growth"):
            if not getattr(self, name) > 1.0:
                raise ValueError(f"AnomalyConfig.{name} must be above 1, got {getattr(self, name)!r}")
        if not 0.5 < self.quantile < 1.0:
            raise ValueError(f"AnomalyConfig.quantile must be within (0.5, 1), got {self.quantile!r}")
        if self.warmup < 2:
            raise ValueError(f"AnomalyConfig.warmup must be at least 2, got {self.warmup!r}")
        if self.min_interval_ms < 1:
            raise ValueError(f"AnomalyConfig.min_interval_ms must be at least 1, got {self.min_interval_ms!r}")


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


_FORECASTS = 4  # last value, fast mean, slow mean, seasonal
_DEPARTURES = 5  # spike, shift, variance, drift, activity
_REASONS = np.array([Reason.SPIKE, Reason.SHIFT, Reason.VARIANCE, Reason.DRIFT, Reason.ACTIVITY], np.int8)
_SEASONAL = 3
_FLOAT_STATE = (
    "first_ms", "last", "fast", "slow", "level", "error", "choice", "short_error", "cusum_up", "cusum_down", "short",
    "mid", "long", "long_var", "q", "hours", "hour_errors", "hour_visits", "weekdays", "deficit", "deficit_size",
    "hold_until_ms", "peak",
)  # fmt: skip


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
        self.q = np.zeros((0, _DEPARTURES))
        self.peak = np.zeros((0, _DEPARTURES))
        """While a departure stays past ``q`` (an episode), the largest it reached; 0 outside an episode."""
        self.deficit = np.zeros(0)
        """Time-weighted mean of the seasonal forecast's errors over the last ``activity_window_ms``."""
        self.deficit_size = np.zeros(0)
        self.hold_until_ms = np.zeros(0)
        """After a scored shift, shift and activity departures are not scored again before this time (Unix ms)."""
        """Its long-run mean absolute size."""
        self.hours = np.zeros((0, 24))
        self.hour_errors = np.zeros((0, 24))
        self.hour_visits = np.zeros((0, 24))
        """Readings each hour term has learnt from (weighted): its first ones are averaged, not forgotten."""
        """The seasonal forecast's mean absolute error by hour of day: water use is lumpy at 7:00, not at 3:00."""
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
            array = np.asarray(state[name])
            expected = getattr(detector, name)
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
        out = Scores(np.zeros(n), np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, np.int8))
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
        choosable = np.where(seasonal_ok[:, None], choice, np.c_[choice[:, :_SEASONAL], np.full(len(row), np.inf)])
        best = np.argmin(choosable, axis=1)
        pick = np.arange(len(row))
        expected = forecasts[pick, best]
        # The seasonal forecast's typical error is that of the hour (at least a quarter of its overall one).
        seasonal_typical = np.maximum(hour_errors, 0.25 * error[:, _SEASONAL])
        typical = np.where(best == _SEASONAL, seasonal_typical, error[pick, best])
        floor = 1e-9 * (1.0 + np.abs(self.long[row]))
        # A spike is a reading that no forecast explains: the smallest departure over the forecasts. (A lumpy
        # series is explained by its hour of day, a random walk by its last value.)
        typicals = np.c_[error[:, :_SEASONAL], seasonal_typical]
        z_each = np.abs(residuals) / (1.25 * typicals + floor[:, None])
        z_each[~seasonal_ok, _SEASONAL] = np.inf
        spike = z_each.min(axis=1)

        judged = seen >= c.warmup
        baseline = np.where(seasonal_ok & (error[:, _SEASONAL] < error[:, 2]), _SEASONAL, 2)
        base_typical = np.where(baseline == _SEASONAL, seasonal_typical, error[pick, baseline])
        z_base = residuals[pick, baseline] / (1.25 * base_typical + floor)
        counting = judged & seasonal_ok  # before that the baseline's errors are mostly its own learning
        up = np.where(counting, np.maximum(0.0, self.cusum_up[row] + z_base - c.cusum_k), 0.0)
        down = np.where(counting, np.maximum(0.0, self.cusum_down[row] - z_base - c.cusum_k), 0.0)
        # Usual activity that does not come: the seasonal errors' mean over the last hours (time-weighted, so any
        # reporting pace) against its long-run size. A CUSUM alone misses lumpy use (water: a few bursts a day).
        since = (time_ms - self.newest_ms[row]).astype(np.float64)
        # A reading stands for at most an hour of activity: one reading after a gap of days is not a day's mean.
        keep = np.exp(-np.minimum(since, HOUR_MS) / c.activity_window_ms)
        deficit = keep * self.deficit[row] + (1.0 - keep) * residuals[:, _SEASONAL]
        deficit_size = self.deficit_size[row]
        missing = np.where(counting, np.abs(deficit) / (deficit_size * c.activity_z + floor), 0.0)
        shift = np.maximum(up, down) / c.cusum_h

        short_error = self.short_error[row] + c.short_rate * (np.abs(residuals[pick, best]) - self.short_error[row])
        ratio = (short_error + floor) / (typical + floor)
        variance = np.maximum(np.log(ratio) / np.log(c.variance_ratio), -np.log(ratio) / np.log(c.flat_ratio))

        long, long_var = self.long[row], self.long_var[row]
        mid = self.mid[row] + c.mid_rate * (value - self.mid[row])
        drift = np.abs(mid - long) / (np.sqrt(long_var) + floor) / c.drift_z

        holding = time_ms < self.hold_until_ms[row]
        departures = np.stack(
            [spike / c.spike_z, np.where(holding, 0.0, shift), variance, drift, np.where(holding, 0.0, missing)], axis=1
        )
        q = np.maximum(self.q[row], 1.0)
        relative = departures / q
        # An episode (a departure staying past q) scores when it begins, and again only when it has grown by
        # ``episode_growth`` past its peak: a few alarms per episode, not one per reading of a flat stretch.
        peak = self.peak[row]
        news = np.where((relative > 1.0) & (relative > c.episode_growth * peak), relative, 0.0)
        strongest = np.argmax(news, axis=1)
        worst = news[pick, strongest]
        score = np.where(judged & (worst > 1.0), 1.0 - np.exp(-c.steepness * (worst - 1.0)), 0.0)
        out.score[at] = score
        out.expected[at] = np.where(judged, expected, np.nan)
        out.typical[at] = np.where(judged, typical, np.nan)
        out.reason[at] = np.where(judged, np.where(score > 0, _REASONS[strongest], Reason.NONE), Reason.WARMUP)

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
        hours = hours + hour_error
        self.weekdays[row, weekday] = weekdays + c.weekday_rate * (value - level - hours - weekdays)
        self.short[row] += c.short_rate * (value - self.short[row])
        long_rate = np.maximum(c.long_rate, 1.0 / count)
        deviation = value - long
        self.long[row] = long + long_rate * deviation
        self.long_var[row] = (1.0 - long_rate) * (long_var + long_rate * deviation * deviation)
        self.mid[row] = mid
        self.deficit[row] = deficit
        # The deficit's usual size is learnt from usual hours only: a departure does not raise its own bar.
        size_rate = np.where(relative[:, 4] > 1.0, 0.0, np.maximum(c.long_rate * 5, 1.0 / count))
        self.deficit_size[row] = deficit_size + size_rate * (np.abs(deficit) - deficit_size)
        # A shift scored past one half: from now on the new level is the usual one (one change, one burst).
        notable_shift = judged & (np.maximum(relative[:, 1], relative[:, 4]) > 1.0 + np.log(2.0) / c.steepness)
        up[notable_shift] = 0.0
        down[notable_shift] = 0.0
        self.cusum_up[row] = up
        self.cusum_down[row] = down
        if notable_shift.any():
            moved = row[notable_shift]
            recent = self.short[moved]
            # The seasonal shape stays and its level moves: by the recent mean error after a level shift (CUSUM), by
            # the hours' mean error after missing activity (the recent readings are the quiet part of the day).
            by_cusum = relative[notable_shift, 1] >= relative[notable_shift, 4]
            recent_error = recent - (level + hours + weekdays)[notable_shift]
            self.level[moved] += np.where(by_cusum, recent_error, deficit[notable_shift])
            self.slow[moved] = recent
            self.mid[moved] = recent
            self.long[moved] = recent
            self.deficit[moved] = 0.0
            self.hold_until_ms[moved] = time_ms[notable_shift] + c.hold_ms
        step = c.quantile_step
        over = relative > 1.0
        tracked = np.where(
            over & (peak == 0.0),
            q * (1.0 + step * c.quantile),
            np.where(over, q, q * (1.0 - step * (1.0 - c.quantile))),
        )
        self.peak[row] = np.where(judged[:, None] & over, np.maximum(peak, relative), 0.0)
        self.q[row] = np.where(judged[:, None], tracked, q)
        self.seen[row] = seen + 1
        self.newest_ms[row] = time_ms

    def _start(self, row: npt.NDArray[np.intp], time_ms: npt.NDArray[np.int64], value: npt.NDArray[np.float64]) -> None:
        """A sensor's first reading: every mean starts at it, every error and profile term at 0."""
        for name in ("last", "fast", "slow", "level", "short", "mid", "long"):
            getattr(self, name)[row] = value
        self.error[row] = 0.0
        self.choice[row] = 0.0
        for name in ("short_error", "cusum_up", "cusum_down", "long_var"):
            getattr(self, name)[row] = 0.0
        self.hours[row] = 0.0
        self.hour_errors[row] = 0.0
        self.hour_visits[row] = 0.0
        self.deficit[row] = 0.0
        self.deficit_size[row] = 0.0
        self.hold_until_ms[row] = 0.0
        self.weekdays[row] = 0.0
        self.q[row] = 1.0
        self.peak[row] = 0.0
        self.first_ms[row] = time_ms
        self.seen[row] = 1
        self.newest_ms[row] = time_ms


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
    return f"{zh}，预期 {expected}，异常分 {score:.2f} / {en}, expected {expected}, score {score:.2f}"
