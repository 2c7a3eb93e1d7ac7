"""How often each sensor (or gateway heartbeat) is expected to be heard, learned from its own arrivals.

A row is one sensor or one gateway. Each arrival at the hub (hub clock, Unix ms) may teach one sample: the gap
since the row's previous arrival. A gap teaches only when it describes the row's live cadence:

- the row was heard before, after the hub's current broker connection began (a gap spanning the hub's own
  outage measures the hub, not the device);
- the device's clock moved forward since the previous arrival (a repeated or older reading is a replay), and by
  no more than ``2 × gap + CATCH_UP_SLACK_MS``: a device clock that ran far ahead of the hub's means a backlog
  being caught up (an edge outbox replaying after an outage delivers hours of readings in seconds), whose gaps
  are the hub's round period, not the sensor's;
- a gap longer than the row's stale limit (an outage) teaches only when the readings that end it are themselves
  that far apart (device time per new reading ≥ half the gap): a sensor that really reports rarely now is
  learned, while the first round of a replayed backlog (one long gap, then many closely spaced old readings)
  is not.

The first ``SEED_SAMPLES`` samples seed the estimate with their median (one outage or one burst among them does
not set it); until then the expected interval is the larger of the policy's default and the largest sample seen,
so a sensor is never judged on a guess tighter than the default. After that the estimate is an exponentially
weighted mean that rises fast (``ALPHA_UP``) and falls slowly (``ALPHA_DOWN``), each sample capped at twice the
estimate: a falsely stale sensor pages the property company for nothing, a late stale one delays a maintenance
ticket by a few intervals, so the estimator errs long. It is clamped to the policy's floor and ceiling; a per-row
override (``report_interval_s`` in the deployment file) replaces it.

Everything is numpy over arrays indexed by row: a round of readings costs a few vectorised passes, not a Python
step per reading.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALPHA_DOWN",
    "ALPHA_UP",
    "CATCH_UP_SLACK_MS",
    "SEED_SAMPLES",
    "IntervalPolicy",
    "IntervalSource",
    "ReportIntervals",
]

Rows = npt.NDArray[np.intp]
IntervalSource = Literal["learned", "override", "default"]
FloatArray = npt.NDArray[np.float64]

SEED_SAMPLES = 3
"""Samples whose median seeds the estimate: the smallest count a median is robust with (one outlier of three)."""
ALPHA_UP = 0.25
"""Weight of a sample above the estimate: a sensor that slowed down is learned within a few gaps."""
ALPHA_DOWN = 1 / 16
"""Weight of a sample below the estimate: a burst of quick reports (an alarm, a replay) pulls it down slowly."""
CATCH_UP_SLACK_MS = 1_000
"""Device time may lead the arrival gap by this much without counting as a catch-up: the edge publishes a batch
every ``publish_interval_s`` (1 s by default), so live readings arrive up to about a second late or early."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IntervalPolicy:
    """Bounds of the expected reporting interval, in seconds, and how many intervals of silence mean stale.

    - ``default_s`` (60 s): the interval assumed before ``SEED_SAMPLES`` gaps are seen. It is the edge's own
      health interval (``edge.config.EdgeConfig.health_interval_s``) and above the cadence of every detector the
      edge polls (its default poll is 0.5 s, a detector ring holds one sample per period), so a sensor is not
      declared stale on a guess before its cadence is known; 3 × 60 s is far inside GB/T 45839-2025's 24 h for
      reporting a communication loss.
    - ``min_s`` (5 s): the floor of a learned interval. The edge publishes once a second and the hub commits in
      rounds; a limit below 3 × 5 s would turn a hub or broker hiccup of a few seconds into thousands of stale
      events for fast sensors.
    - ``max_s`` (6 h): the ceiling, so a sensor that drifted to reporting rarely is still declared within
      3 × 6 h = 18 h, inside GB/T 45839's 24 h.
    - ``intervals`` (3): issue 4, "stop reporting for 3 intervals".
    """

    default_s: float = 60.0
    min_s: float = 5.0
    max_s: float = 6 * 3600.0
    intervals: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.default_s <= self.max_s:
            raise ValueError(
                f"interval bounds must satisfy 0 < min_s <= default_s <= max_s, got "
                f"min_s={self.min_s!r} default_s={self.default_s!r} max_s={self.max_s!r}"
            )
        if self.intervals < 1:
            raise ValueError(f"intervals must be >= 1, got {self.intervals!r}")


class ReportIntervals:
    """Per-row arrival clock and expected interval (``interval_ms``, always current) for ``size`` rows.

    ``overrides_s`` holds a fixed interval per row in seconds, NaN where the interval is learned.
    """

    def __init__(self, size: int, *, policy: IntervalPolicy, overrides_s: FloatArray | None = None) -> None:
        self.policy = policy
        self.last_ms: npt.NDArray[np.int64] = np.full(size, -1, np.int64)
        """Hub clock of the row's latest arrival (Unix ms); -1 before the first."""
        self.override_ms: FloatArray = (
            np.full(size, np.nan) if overrides_s is None else np.asarray(overrides_s, np.float64) * 1000.0
        )
        if self.override_ms.shape != (size,):
            raise ValueError(f"overrides_s must have {size} entries, got shape {self.override_ms.shape}")
        self.estimate_ms: FloatArray = np.full(size, np.nan)
        self.samples: npt.NDArray[np.int8] = np.zeros(size, np.int8)
        """Samples taken, saturating at ``SEED_SAMPLES`` (the estimate is learned from there on)."""
        self._seed: FloatArray = np.full((size, SEED_SAMPLES), np.nan)
        self.interval_ms: FloatArray = np.empty(size)
        self._refresh(np.arange(size, dtype=np.intp))

    def __len__(self) -> int:
        return len(self.last_ms)

    def limit_ms(self) -> FloatArray:
        """Silence after which each row counts as gone: ``intervals × interval`` (ms)."""
        return self.interval_ms * self.policy.intervals

    def arrive(
        self, rows: Rows, received_ms: int, advance_ms: FloatArray, newer: npt.NDArray[np.intp], *, learn_after_ms: int
    ) -> None:
        """Rows (unique) heard at ``received_ms``; learn from the gaps that describe live cadence (module doc).

        ``advance_ms``: how far each row's device clock moved since its previous arrival (NaN when unknown);
        ``newer``: how many of the arrived readings are newer than what was seen before. Gaps from arrivals
        before ``learn_after_ms`` (the start of the hub's broker connection) are not learned.
        """
        previous = self.last_ms[rows]
        gap = (received_ms - previous).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            spacing = advance_ms / newer
            live = (
                (previous >= 0)
                & (previous >= learn_after_ms)
                & (gap > 0)
                & (advance_ms > 0)
                & (advance_ms <= 2 * gap + CATCH_UP_SLACK_MS)
                & ((gap <= self.interval_ms[rows] * self.policy.intervals) | (spacing >= gap / 2))
            )
        self.last_ms[rows] = np.maximum(previous, received_ms)
        if live.any():
            self._learn(rows[live], gap[live])

    def source(self, rows: Rows) -> list[IntervalSource]:
        """Where each row's interval comes from: ``override``, ``learned`` or ``default`` (still seeding)."""
        overridden = ~np.isnan(self.override_ms[rows])
        learned = self.samples[rows] >= SEED_SAMPLES
        names: list[IntervalSource] = []
        for is_override, is_learned in zip(overridden.tolist(), learned.tolist(), strict=True):
            names.append("override" if is_override else "learned" if is_learned else "default")
        return names

    def _learn(self, rows: Rows, gaps: FloatArray) -> None:
        taken = self.samples[rows]
        seeding = taken < SEED_SAMPLES
        if seeding.any():
            seed_rows = rows[seeding]
            self._seed[seed_rows, taken[seeding]] = gaps[seeding]
            self.samples[seed_rows] += 1
            seeded = seed_rows[self.samples[seed_rows] >= SEED_SAMPLES]
            self.estimate_ms[seeded] = np.median(self._seed[seeded], axis=1)
            self._refresh(seed_rows)
        learned = ~seeding
        if learned.any():
            known = rows[learned]
            estimate = self.estimate_ms[known]
            sample = np.minimum(gaps[learned], 2 * estimate)
            alpha = np.where(sample > estimate, ALPHA_UP, ALPHA_DOWN)
            estimate += alpha * (sample - estimate)
            self.estimate_ms[known] = estimate
            override = self.override_ms[known]
            bounded = np.clip(estimate, self.policy.min_s * 1000.0, self.policy.max_s * 1000.0)
            self.interval_ms[known] = np.where(np.isnan(override), bounded, override)

    def _refresh(self, rows: Rows) -> None:
        policy = self.policy
        default_ms = policy.default_s * 1000.0
        with np.errstate(invalid="ignore"):
            early = np.fmax(default_ms, np.fmax.reduce(self._seed[rows], axis=1))
        chosen = np.where(self.samples[rows] >= SEED_SAMPLES, self.estimate_ms[rows], early)
        bounded = np.clip(chosen, policy.min_s * 1000.0, policy.max_s * 1000.0)
        override = self.override_ms[rows]
        self.interval_ms[rows] = np.where(np.isnan(override), bounded, override)
