"""The streaming anomaly detector's cost at a district's scale (issue 5, layer 3 only).

Figure: readings/s of ``AnomalyDetector.score`` on one core, 10,000 sensors, in two round shapes — one reading of
every sensor per call (an ingest round of a steady fleet: one wave) and five readings of every sensor per call (a
backlog: five waves). Values are a daily rhythm plus noise, 5-minute steps, after a warm-up day so that every
departure is computed. Reference in the same run: a bare numpy scatter-update of one exponentially weighted mean
for the same rows (``mean[rows] += a * (values - mean[rows])``), the least any per-sensor streaming state costs.
CPU time (``time.process_time``), median of ``REPEATS`` calls. Issue 5's target (≥ 1 M readings/s) is for all three
layers together; the rules and health layers are not in this figure.

``python -m bench anomaly``
"""

import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from hub.detection.anomaly import AnomalyConfig, AnomalyDetector

__all__ = ["EwScatter", "main", "run"]

SENSORS = 10_000
STEP_MS = 300_000
T0 = 1_790_000_000_000
REPEATS = 15


def _values(rng: np.random.Generator, steps: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    phase = np.tile(np.arange(SENSORS) % 24, len(steps) // SENSORS)
    return 20.0 + 3.0 * np.sin(2 * np.pi * (steps / 288 + phase / 24)) + rng.normal(0.0, 0.4, len(steps))


Round = tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.float64]]


def _median_cpu(call: Callable[[Round], None], rounds: list[Round]) -> float:
    spent = []
    for one in rounds:
        start = time.process_time()
        call(one)
        spent.append(time.process_time() - start)
    return statistics.median(spent)


def _rounds(rng: np.random.Generator, detector: AnomalyDetector, per_sensor: int) -> list[Round]:
    """Warm ``detector`` up for a day of 5-minute readings, then make the measured rounds that follow it."""
    step = 0
    for _ in range(10):
        steps = np.repeat(np.arange(step, step + 30), SENSORS)
        detector.score(np.tile(np.arange(SENSORS), 30), T0 + steps * STEP_MS, _values(rng, steps))
        step += 30
    rounds = []
    for _ in range(REPEATS):
        steps = np.repeat(np.arange(step, step + per_sensor), SENSORS)
        rounds.append((np.tile(np.arange(SENSORS), per_sensor), T0 + steps * STEP_MS, _values(rng, steps)))
        step += per_sensor
    return rounds


class _Score:
    def __init__(self, detector: AnomalyDetector) -> None:
        self.detector = detector

    def __call__(self, one: Round) -> None:
        self.detector.score(*one)


class EwScatter:
    """The reference: one exponentially weighted mean per sensor, updated wave by wave like the detector."""

    def __init__(self) -> None:
        self.mean = np.zeros(SENSORS)

    def __call__(self, one: Round) -> None:
        rows, _, values = one
        for start in range(0, len(rows), SENSORS):
            at = slice(start, start + SENSORS)
            self.mean[rows[at]] += 0.1 * (values[at] - self.mean[rows[at]])


def run() -> dict[str, float]:
    rng = np.random.default_rng(11)
    results: dict[str, float] = {}
    for per_sensor in (1, 5):
        detector = AnomalyDetector()
        rounds = _rounds(rng, detector, per_sensor)
        n = SENSORS * per_sensor
        results[f"detector_{per_sensor}"] = n / _median_cpu(_Score(detector), rounds)
        results[f"scatter_{per_sensor}"] = n / _median_cpu(EwScatter(), rounds)
    return results


FAST_SENSORS, FAST_READINGS, FAST_STEP_MS = 2_000, 22, 13
"""The fast-detector shape: ingest rounds like ``bench hub_ingest``'s 150,000/s step (2,000 sensors at 75 Hz, ~22
readings of each per 0.3 s round)."""


def run_fast() -> dict[str, float]:
    """CPU per reading of fast-detector rounds, judged at most once a second (the default) and every reading
    (``min_interval_ms=1``, the reference), after two minutes of warm-up at the same pace."""
    results: dict[str, float] = {}
    for name, interval in (("thinned", AnomalyConfig().min_interval_ms), ("every", 1)):
        rng = np.random.default_rng(12)
        detector = AnomalyDetector(AnomalyConfig(min_interval_ms=interval))
        rows = np.tile(np.arange(FAST_SENSORS), FAST_READINGS)
        rounds: list[Round] = []
        for k in range(400 + REPEATS):
            times = T0 + (k * FAST_READINGS + np.repeat(np.arange(FAST_READINGS), FAST_SENSORS)) * FAST_STEP_MS
            rounds.append((rows, times.astype(np.int64), 20.0 + rng.normal(0.0, 0.4, len(rows))))
        for one in rounds[:400]:
            detector.score(*one)
        results[name] = _median_cpu(_Score(detector), rounds[400:]) / len(rows)
    return results


def main() -> None:
    r = run()
    for per_sensor, shape in ((1, "one reading of each sensor per call"), (5, "five readings of each per call")):
        found, reference = r[f"detector_{per_sensor}"], r[f"scatter_{per_sensor}"]
        sys.stdout.write(
            f"anomaly detector, {SENSORS:,} sensors, {shape}: {found / 1e6:.2f} M readings/s "
            f"(one core, CPU time, median of {REPEATS}); reference bare EW-mean scatter of the same rows: "
            f"{reference / 1e6:.1f} M readings/s; ratio {found / reference:.3f}"
            " (issue 5 target, all three layers: >= 1 M readings/s)\n"
        )
    fast = run_fast()
    sys.stdout.write(
        f"anomaly detector, {FAST_SENSORS:,} sensors at {1000 / FAST_STEP_MS:.0f} Hz, {FAST_READINGS} readings of each "
        f"per call: {fast['thinned'] * 1e6:.3f} µs CPU a reading judging at most one a second (the default); "
        f"reference judging every reading: {fast['every'] * 1e6:.3f} µs; ratio {fast['thinned'] / fast['every']:.3f}\n"
    )


if __name__ == "__main__":
    main()
