"""bench/anomaly_quality.py on tiny inputs: the NAB-like scoring, the references, the corpus, the CLI round trip."""

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.anomaly_quality import (
    DAY_MS,
    FAMILIES,
    HOUR_MS,
    MINUTE_MS,
    T0_MS,
    Family,
    Floats,
    Ints,
    Series,
    anju_scores,
    corpus,
    evaluate,
    report,
    rolling_z,
    run,
    seasonal_naive_z,
)
from hub.cli import main as hub_main

STEP = 5 * MINUTE_MS


def _flat(windows: tuple[tuple[int, int], ...]) -> Series:
    t = T0_MS + np.arange(10 * DAY_MS // STEP, dtype=np.int64) * STEP
    return Series("flat", 0, "test", t, np.zeros(len(t)), windows)


def _at(s: Series, ms: int) -> int:
    return int(np.searchsorted(s.time_ms, ms))


def test_a_perfect_detector_scores_100_and_a_null_one_0() -> None:
    windows = ((T0_MS + 6 * DAY_MS, T0_MS + 6 * DAY_MS + 6 * HOUR_MS), (T0_MS + 8 * DAY_MS, T0_MS + 9 * DAY_MS))
    s = _flat(windows=windows)
    perfect = np.zeros(len(s.time_ms))
    for start, _ in windows:
        perfect[_at(s, start)] = 1.0
    best = evaluate(s, perfect)
    assert best.nab == pytest.approx(100.0)
    assert (best.detected, best.windows, best.false_alerts, best.median_delay_min) == (2, 2, 0, 0.0)
    null = evaluate(s, np.zeros(len(s.time_ms)))
    assert null.nab == pytest.approx(0.0) and null.detected == 0


def test_earlier_counts_more_and_false_flags_count_once_an_hour() -> None:
    start, end = T0_MS + 6 * DAY_MS, T0_MS + 6 * DAY_MS + 10 * HOUR_MS
    s = _flat(windows=((start, end),))
    early, late = np.zeros(len(s.time_ms)), np.zeros(len(s.time_ms))
    early[_at(s, start + HOUR_MS)] = 1.0
    late[_at(s, start + 8 * HOUR_MS)] = 1.0
    assert evaluate(s, early).nab > evaluate(s, late).nab > 0.0
    assert evaluate(s, late).median_delay_min == 480.0
    # Three flags within 20 minutes: one episode; three hours of flags: three; flags in probation: none.
    burst = early.copy()
    burst[_at(s, T0_MS + 3 * DAY_MS) : _at(s, T0_MS + 3 * DAY_MS) + 3] = 1.0
    assert evaluate(s, burst).false_alerts == 1
    held = early.copy()
    held[_at(s, T0_MS + 3 * DAY_MS) : _at(s, T0_MS + 3 * DAY_MS + 3 * HOUR_MS)] = 1.0
    assert evaluate(s, held).false_alerts == 3
    assert evaluate(s, held).nab < evaluate(s, burst).nab < evaluate(s, early).nab
    probation = early.copy()
    probation[_at(s, T0_MS + DAY_MS)] = 1.0
    assert evaluate(s, probation).false_alerts == 0
    # A flag that goes on past its window is charged little right after it; one in an ignored span not at all.
    on = early.copy()
    on[_at(s, end + HOUR_MS)] = 1.0
    assert -0.11 < evaluate(s, on).raw - evaluate(s, early).raw < 0.0
    spared = Series(s.family, s.seed, s.kind, s.time_ms, s.value, s.windows, ((end, end + 2 * HOUR_MS),))
    assert evaluate(spared, on).false_alerts == 0


def test_the_rolling_z_score_is_the_trailing_days_z_one_half_at_3_sigma() -> None:
    rng = np.random.default_rng(1)
    t = T0_MS + np.arange(2 * 288, dtype=np.int64) * STEP
    v = rng.normal(10.0, 2.0, len(t))
    scores = rolling_z(t, v)
    for i in (300, 400, 575):
        before = v[i - 288 : i]
        z = (v[i] - before.mean()) / before.std(ddof=1)
        assert scores[i] == pytest.approx(1.0 - 2.0 ** (-abs(z) / 3.0))
    assert scores[5] == 0.0  # fewer than 12 readings before it
    assert rolling_z(t[:20], np.r_[np.zeros(19), 1.0])[19] == 1.0  # off a flat series: as far as can be


@pytest.mark.parametrize("reference", [rolling_z, seasonal_naive_z])
def test_the_references_are_causal(reference: Callable[[Ints, Floats], Floats]) -> None:
    s = corpus([FAMILIES[2]], seeds=1)[0]
    whole = reference(s.time_ms, s.value)
    prefix = reference(s.time_ms[:2000], s.value[:2000])
    assert np.array_equal(prefix, whole[:2000])
    assert whole.min() >= 0.0 and whole.max() <= 1.0


def test_the_corpus_is_seeded_and_labelled_within_each_series() -> None:
    first, again = corpus(seeds=2), corpus(seeds=2)
    assert len(first) == 2 * len(FAMILIES)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.time_ms, b.time_ms) and np.array_equal(a.value, b.value) and a.windows == b.windows
        assert np.all(np.diff(a.time_ms) > 0) and np.all(np.isfinite(a.value))
        assert a.windows and all(a.probation_end_ms < w0 < w1 <= a.time_ms[-1] + DAY_MS for w0, w1 in a.windows)


def test_anju_is_scored_as_anju_hub_score_scores_a_file(tmp_path: Path) -> None:
    s = corpus([FAMILIES[0]], seeds=1)[0]
    value = s.value[:700].copy()
    value[600] += 20.0  # something to score past the warm-up
    short = Series(s.family, s.seed, s.kind, s.time_ms[:700], value, s.windows)
    source, sink = tmp_path / "in.csv", tmp_path / "out.csv"
    stamps = np.datetime_as_string(short.time_ms.astype("datetime64[ms]"), unit="s")
    with source.open("w", newline="") as f:
        csv.writer(f).writerows([("timestamp", "value"), *zip(stamps, map(repr, short.value.tolist()), strict=True)])
    assert hub_main(["score", "--input", str(source), "--output", str(sink)]) == 0
    with sink.open(newline="") as f:
        cli = np.array([float(row["anomaly_score"]) for row in csv.DictReader(f)])
    assert np.array_equal(anju_scores(short), cli)
    assert cli[600] > 0.5


def _tiny(rng: np.random.Generator, seed: int) -> Series:
    t = T0_MS + np.arange(3 * 288, dtype=np.int64) * STEP
    v = 20.0 + rng.normal(0.0, 0.3, len(t))
    i = 700 + seed
    v[i] += 8.0
    return Series("tiny", seed, "spike", t, v, ((int(t[i]), int(t[i]) + 15 * MINUTE_MS),))


def test_the_report_gives_anju_the_reference_and_a_line_per_family() -> None:
    result = run([Family("tiny", 5, 3, _tiny)], seeds=2)
    out = io.StringIO()
    report(result, out)
    head, family = out.getvalue().splitlines()
    assert head.startswith("anomaly quality, 2 labelled synthetic series (1 families, 2 windows, 1,728 readings")
    assert "Anju (anju-hub score's code path) NAB-like score" in head and "reference rolling z-score" in head
    assert "ratio" in head and "seasonal-naive z-score" in head
    assert family.startswith("  tiny (5 min, 3 d, 2 series: spike): Anju ")
    assert result.outcome("rolling z-score", 0.5).detected == 2  # an 8-sigma spike on white noise
