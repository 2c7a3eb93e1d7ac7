"""Dashboard queries on the embedded store holding 100 M readings (issue 4 targets, p95).

A community of 2,000 sensors, each reporting every 53.568 s for 31 days (the last day ending at the start of
today, UTC): 2,000 × 50,000 = 100 M readings, bulk-loaded through ``ChunkStore.commit`` in 200,000-reading
commits — the same code path as the hub's ingest rounds — compacted as the hub's housekeeping would, the finished
days' rollups closed. Values are a daily rhythm plus noise, so buckets have work to do. Then, each query ``REPEATS``
times on random sensors, p50 and p95 against the issue's targets:

- latest value of every sensor of the community (2,000 sensors)                      target <= 50 ms
- one sensor's last 24 h in 1-minute buckets                                          target <= 20 ms
- one sensor's last 30 days in 1-hour buckets                                         target <= 50 ms
- one sensor's last hour of raw readings (not a target; what the sensor page opens with)

Also: bulk-load rate (readings/s through commit + compaction), the store's bytes on disk per reading, and the time
to open the store again (what a hub restart costs). The store goes to a temporary directory under run/bench and is
removed afterwards (about 4.5 GB while it runs). ``python -m bench hub_queries`` runs it (about 4 minutes).
"""

import math
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hub.store.base import ReadingColumns
from hub.store.chunks import DAY_MS, MINUTE_MS, ChunkStore

__all__ = ["run"]

REPO = Path(__file__).resolve().parents[1]
SENSORS = 2_000
READINGS_PER_SENSOR = 50_000
INTERVAL_MS = 53_568
"""31 days / 50,000 readings, to the millisecond: 2,000 × 50,000 = 100 M readings over 31 days."""
ROUNDS_PER_COMMIT = 100
"""Time steps per commit: 200,000 readings, four ingest rounds' worth at 500 × 100-reading messages."""
REPEATS = 200
TARGETS_MS = {"latest": 50.0, "day_1m": 20.0, "month_1h": 50.0}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _time_ms(work: Callable[[], object], repeats: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        runs.append((time.perf_counter() - began) * 1000)
    return statistics.median(runs), _percentile(runs, 0.95)


def load(store: ChunkStore, end_ms: int) -> float:
    """Bulk-load the readings ending at ``end_ms``; returns readings/s including compaction."""
    names = [f"sensor-{i:04d}" for i in range(SENSORS)]
    gateways = [f"gw-{i // 100:02d}" for i in range(SENSORS)]
    start_ms = end_ms - READINGS_PER_SENSOR * INTERVAL_MS
    phase = np.arange(SENSORS, dtype=np.int64) * (INTERVAL_MS // SENSORS)
    rng = np.random.default_rng(20261129)
    names_batch = names * ROUNDS_PER_COMMIT
    gateways_batch = gateways * ROUNDS_PER_COMMIT
    flags = np.zeros(SENSORS * ROUNDS_PER_COMMIT, np.uint8)
    began = time.perf_counter()
    for first in range(0, READINGS_PER_SENSOR, ROUNDS_PER_COMMIT):
        steps = np.arange(first, first + ROUNDS_PER_COMMIT, dtype=np.int64)
        times = (start_ms + steps[:, None] * INTERVAL_MS + phase[None, :]).ravel()
        day_phase = (times % DAY_MS) / DAY_MS * 2 * np.pi
        values = np.round(20 + 5 * np.sin(day_phase) + rng.normal(0, 0.5, times.size), 2)
        store.commit(ReadingColumns(names_batch, gateways_batch, times, values, flags), [], [])
        store.maintain(end_ms)
    store.compact()
    store.maintain(end_ms)
    return SENSORS * READINGS_PER_SENSOR / (time.perf_counter() - began)


def run(*, workdir: Path | None = None) -> dict[str, float]:
    base = workdir or REPO / "run" / "bench"
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="hub-queries-", dir=base))
    try:
        path = directory / "readings.anju"
        end_ms = (time.time_ns() // 1_000_000 // DAY_MS) * DAY_MS
        store = ChunkStore(path=path, raw_retention_days=60, compact_readings=5_000_000)
        results: dict[str, float] = {"load_per_s": load(store, end_ms)}
        store.checkpoint()
        results["readings"] = store.count_readings()
        results["disk_bytes_per_reading"] = store.disk_bytes() / store.count_readings()
        store.close()
        began = time.perf_counter()
        store = ChunkStore(path=path, raw_retention_days=60)
        results["open_s"] = time.perf_counter() - began
        names = [f"sensor-{i:04d}" for i in range(SENSORS)]
        rng = random.Random(7)
        results["latest_p50_ms"], results["latest_p95_ms"] = _time_ms(lambda: store.latest(names), REPEATS)
        results["day_1m_p50_ms"], results["day_1m_p95_ms"] = _time_ms(
            lambda: store.buckets(rng.choice(names), end_ms - DAY_MS, end_ms, MINUTE_MS), REPEATS
        )
        results["month_1h_p50_ms"], results["month_1h_p95_ms"] = _time_ms(
            lambda: store.buckets(rng.choice(names), end_ms - 30 * DAY_MS, end_ms, 60 * MINUTE_MS), REPEATS
        )
        results["raw_hour_p50_ms"], results["raw_hour_p95_ms"] = _time_ms(
            lambda: store.readings(rng.choice(names), end_ms - 3_600_000, end_ms, 10_000), REPEATS
        )
        day = store.buckets(names[0], end_ms - DAY_MS, end_ms, MINUTE_MS)
        month = store.buckets(names[0], end_ms - 30 * DAY_MS, end_ms, 60 * MINUTE_MS)
        if len(day) < 1_000 or len(month) != 720 or sum(b.count for b in month) < 48_000:
            raise RuntimeError(f"the queries answered too little: {len(day)} minutes, {len(month)} hours")
        store.close()
        return results
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def report(results: dict[str, float], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    say(
        f"hub queries on {results['readings'] / 1e6:.0f} M readings ({SENSORS:,} sensors × 31 days, embedded store): "
        f"bulk load {results['load_per_s']:,.0f} readings/s through commit + compaction; "
        f"{results['disk_bytes_per_reading']:.1f} bytes on disk per reading; reopened in {results['open_s']:.2f} s"
    )
    for key, label in (
        ("latest", f"latest value of all {SENSORS:,} sensors"),
        ("day_1m", "one sensor, 24 h in 1-minute buckets"),
        ("month_1h", "one sensor, 30 days in 1-hour buckets"),
        ("raw_hour", "one sensor, last hour raw"),
    ):
        target = TARGETS_MS.get(key)
        p95 = results[f"{key}_p95_ms"]
        verdict = "" if target is None else f"; target p95 <= {target:.0f} ms: {'met' if p95 <= target else 'NOT met'}"
        say(f"  {label}: p50 {results[f'{key}_p50_ms']:.2f} ms, p95 {p95:.2f} ms{verdict}")


if __name__ == "__main__":
    report(run())
