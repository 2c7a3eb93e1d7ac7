"""The ReadingStore contract (hub/store/base.py), one suite for every backend: embedded and a real InfluxDB 1.x.

Every expected value is computed here from the test's own input. Times are recent (the last few days, so inside
InfluxDB's 30-day raw retention) and whole-day aligned where buckets need it.
"""

import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from hub.store.base import (
    Bucket,
    DeadLetter,
    HealthRecord,
    ReadingColumns,
    ReadingFlag,
    ReadingStore,
    SessionMark,
    StoredReading,
)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
DAY0 = (time.time_ns() // 1_000_000 // DAY_MS - 3) * DAY_MS
"""Midnight UTC three days ago: every reading of the suite is later than this and earlier than now."""

Opener = Callable[[], ReadingStore]


@pytest.fixture(params=["embedded", "influxdb"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new store object over the same data each time it is called (reopen = a new object)."""
    opened: list[ReadingStore] = []
    if request.param == "embedded":
        from hub.store.chunks import ChunkStore

        def open_one() -> ReadingStore:
            return ChunkStore(path=tmp_path / "r.anju", raw_retention_days=30, rollup_retention_days=365)
    else:
        from hub.store.influx import InfluxStore
        from hub.store.influx_http import InfluxTarget

        url: str = request.getfixturevalue("influxdb")
        target = InfluxTarget.v1(url=url, database=f"contract_{uuid.uuid4().hex[:12]}")

        def open_one() -> ReadingStore:
            return InfluxStore(
                target=target,
                community="hongxing",
                meta_path=tmp_path / "meta.sqlite3",
                raw_retention_days=30,
                rollup_retention_days=365,
            )

    def tracked() -> ReadingStore:
        store = open_one()
        opened.append(store)
        return store

    yield tracked
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> ReadingStore:
    return opener()


def cols(*rows: tuple[str, int, float] | tuple[str, int, float, int], gateway: str = "gw-1") -> ReadingColumns:
    """Columns from (sensor, time_ms, value[, flags]) tuples."""
    return ReadingColumns.of(StoredReading(r[0], r[1], r[2], gateway, r[3] if len(r) > 3 else 0) for r in rows)


def commit(store: ReadingStore, readings: ReadingColumns) -> int:
    return store.commit(readings, [], [])


def test_commit_returns_the_new_count_and_is_idempotent(store: ReadingStore) -> None:
    batch = cols(("gas-1", DAY0 + 1_000, 1.5), ("gas-2", DAY0 + 1_000, 2.5), ("gas-1", DAY0 + 2_000, 3.5))
    assert commit(store, batch) == 3
    assert commit(store, batch) == 0, "the same points again are not new"
    assert store.count_readings() == 3
    assert store.readings("gas-1", DAY0, DAY0 + DAY_MS, 100) == [
        StoredReading("gas-1", DAY0 + 1_000, 1.5, "gw-1"),
        StoredReading("gas-1", DAY0 + 2_000, 3.5, "gw-1"),
    ]


def test_a_point_written_again_keeps_its_first_value(store: ReadingStore) -> None:
    assert commit(store, cols(("gas-1", DAY0 + 1_000, 1.0), ("gas-1", DAY0 + 1_000, 2.0))) == 1
    assert commit(store, cols(("gas-1", DAY0 + 1_000, 3.0))) == 0
    assert store.readings("gas-1", DAY0, DAY0 + DAY_MS, 10) == [StoredReading("gas-1", DAY0 + 1_000, 1.0, "gw-1")]
    assert store.count_readings() == 1


def test_a_replay_of_older_points_mixed_with_new_ones(store: ReadingStore) -> None:
    first = [(s, DAY0 + HOUR_MS + k * 10_000, float(k)) for s in ("t-1", "t-2") for k in range(0, 40, 2)]
    assert commit(store, cols(*first)) == len(first)
    # A gateway's replay: every point from the start again (half of them stored), plus newer ones.
    replay = [(s, DAY0 + HOUR_MS + k * 10_000, float(k)) for s in ("t-1", "t-2") for k in range(50)]
    stored = {(s, t) for s, t, _ in first}
    expected_new = len({(s, t) for s, t, _ in replay} - stored)
    assert commit(store, cols(*replay)) == expected_new == 60
    assert commit(store, cols(*replay)) == 0
    assert store.count_readings() == 100
    times = [r.time_ms for r in store.readings("t-1", DAY0, DAY0 + DAY_MS, 1_000)]
    assert times == [DAY0 + HOUR_MS + k * 10_000 for k in range(50)]


def test_staged_rounds_committed_in_order_count_as_plain_commits(store: ReadingStore) -> None:
    """The hub stages a round while the one before is committed: overlapping rounds, even with points in common,
    store and count exactly as the same commits one after the other, and a staged round never committed leaves no
    mark (its points may be in the store: a replay is absorbed)."""
    first = cols(*[(s, DAY0 + k * 1_000, float(k)) for s in ("w-1", "w-2") for k in range(10)])
    second = cols(*[(s, DAY0 + k * 1_000, float(-k)) for s in ("w-1", "w-2") for k in range(5, 15)])
    store.stage(first)
    store.stage(second)
    assert store.commit(first, [], [SessionMark("gw-1", 1, 1)]) == 20
    assert store.commit(second, [], [SessionMark("gw-1", 1, 2)]) == 10, "the five points of each in common are old"
    assert store.count_readings() == 30
    values = [r.value for r in store.readings("w-1", DAY0, DAY0 + DAY_MS, 100)]
    assert values == [float(k) for k in range(10)] + [float(-k) for k in range(10, 15)], "the first write wins"
    abandoned = cols(("w-1", DAY0 + 60_000, 9.0))
    store.stage(abandoned)
    assert store.session_marks() == [SessionMark("gw-1", 1, 2)]
    # Another object with the same point: committed on its own (the staged writes may have landed already).
    assert store.commit(cols(("w-1", DAY0 + 60_000, 9.0)), [], []) in (0, 1)
    assert store.count_readings() == 31


def test_readings_bounds_limit_and_order(store: ReadingStore) -> None:
    times = [DAY0 + k * 1_000 for k in range(20)]
    shuffled = [times[i] for i in np.random.default_rng(7).permutation(len(times))]
    commit(store, cols(*[("co-1", t, (t - DAY0) / 1_000) for t in shuffled], ("co-2", times[5], 99.0)))
    got = store.readings("co-1", times[3], times[10], 100)
    assert [r.time_ms for r in got] == times[3:10], "start inclusive, end exclusive, oldest first"
    assert [r.value for r in got] == [float(k) for k in range(3, 10)]
    assert [r.time_ms for r in store.readings("co-1", times[3], times[10], 4)] == times[3:7]
    assert store.readings("co-1", times[10], times[3], 100) == []
    assert store.readings("nobody", DAY0, DAY0 + DAY_MS, 100) == []


def test_window_across_sensors_by_time_then_sensor(store: ReadingStore) -> None:
    rows = [
        (sensor, DAY0 + k * 5_000, float(i * 100 + k))
        for i, sensor in enumerate(["s-b", "s-a", "s-c", "s-d"])
        for k in range(10)
        if not (sensor == "s-c" and k % 3)
    ]
    commit(store, cols(*rows))
    wanted = ["s-c", "s-a", "s-b"]
    start, end = DAY0 + 5_000, DAY0 + 45_000
    expected = sorted(
        (StoredReading(s, t, v, "gw-1") for s, t, v in rows if s in wanted and start <= t < end),
        key=lambda r: (r.time_ms, r.sensor),
    )
    assert store.window(wanted, start, end, 1_000) == expected
    for limit in (1, 2, 3, 4, 5, 7, len(expected)):  # 4 and 7 cut inside a group of equal times
        assert store.window(wanted, start, end, limit) == expected[:limit]
    assert store.window([], start, end, 10) == []


def test_latest_per_sensor_and_sensors_without_data_are_absent(store: ReadingStore) -> None:
    commit(
        store,
        cols(
            ("h-1", DAY0 + 3_000, 3.0),
            ("h-1", DAY0 + 9_000, 9.0),
            ("h-1", DAY0 + 5_000, 5.0),
            ("h-2", DAY0 + 1_000, 1.0, ReadingFlag.NONE),
        ),
    )
    # A device clock far ahead: stored with the flag, but not the sensor's latest value.
    future = time.time_ns() // 1_000_000 + 10 * DAY_MS
    commit(store, cols(("h-2", future, 7.0, ReadingFlag.CLOCK_SKEW)))
    assert store.latest(["h-1", "h-2", "h-3"]) == {
        "h-1": StoredReading("h-1", DAY0 + 9_000, 9.0, "gw-1"),
        "h-2": StoredReading("h-2", DAY0 + 1_000, 1.0, "gw-1"),
    }
    assert store.latest([]) == {}


def expected_buckets(rows: list[tuple[int, float]], start: int, end: int, width: int) -> list[Bucket]:
    inside = sorted((t, v) for t, v in rows if start <= t < end)
    out = []
    for bucket, group in itertools.groupby(inside, key=lambda r: r[0] // width * width):
        values = [v for _, v in group]
        out.append(Bucket(bucket, len(values), min(values), max(values), sum(values) / len(values)))
    return out


@pytest.mark.parametrize("width_ms", [MINUTE_MS, HOUR_MS, DAY_MS])
def test_buckets_count_min_max_mean(store: ReadingStore, width_ms: int) -> None:
    rng = np.random.default_rng(width_ms)
    times = DAY0 + 20 * HOUR_MS + np.arange(0, 30 * HOUR_MS, 7_000, dtype=np.int64)  # across a midnight
    values = np.round(rng.normal(20.0, 5.0, len(times)), 3)
    rows = list(zip(times.tolist(), values.tolist(), strict=True))
    commit(store, cols(*[("temp-1", t, v) for t, v in rows], ("temp-2", int(times[0]), 1e6)))
    start, end = DAY0 + 20 * HOUR_MS + 12_345, DAY0 + 49 * HOUR_MS - 4_321  # neither aligned
    got = store.buckets("temp-1", start, end, width_ms)
    expected = expected_buckets(rows, start, end, width_ms)
    assert [(b.start_ms, b.count, b.min, b.max) for b in got] == [(b.start_ms, b.count, b.min, b.max) for b in expected]
    assert [b.mean for b in got] == pytest.approx([b.mean for b in expected], rel=1e-12)
    assert store.buckets("temp-1", end, start, width_ms) == []
    assert store.buckets("nobody", start, end, width_ms) == []


@pytest.mark.parametrize("width_ms", [0, 30_000, 90_000, 2 * DAY_MS])
def test_buckets_refuse_widths_that_are_not_whole_minutes_up_to_a_day(store: ReadingStore, width_ms: int) -> None:
    with pytest.raises(ValueError, match="bucket width"):
        store.buckets("temp-1", DAY0, DAY0 + DAY_MS, width_ms)


def test_flags_round_trip(store: ReadingStore) -> None:
    skewed = DAY0 + 2 * DAY_MS + 17
    commit(store, cols(("smoke-1", DAY0 + 1, 0.5), ("smoke-1", skewed, 0.25, ReadingFlag.CLOCK_SKEW)))
    assert store.readings("smoke-1", DAY0, DAY0 + 3 * DAY_MS, 10) == [
        StoredReading("smoke-1", DAY0 + 1, 0.5, "gw-1", 0),
        StoredReading("smoke-1", skewed, 0.25, "gw-1", int(ReadingFlag.CLOCK_SKEW)),
    ]
    assert [r.flags for r in store.window(["smoke-1"], DAY0, DAY0 + 3 * DAY_MS, 10)] == [0, ReadingFlag.CLOCK_SKEW]


def test_marks_never_move_backwards(store: ReadingStore) -> None:
    empty = ReadingColumns.empty()
    assert store.commit(empty, [], [SessionMark("gw-1", 1, 5), SessionMark("gw-2", 7, 2)]) == 0
    store.commit(empty, [], [SessionMark("gw-1", 1, 3), SessionMark("gw-1", 2, 1)])
    store.commit(empty, [], [SessionMark("gw-2", 7, 9)])
    assert sorted(store.session_marks(), key=lambda m: (m.gateway, m.session)) == [
        SessionMark("gw-1", 1, 5),
        SessionMark("gw-1", 2, 1),
        SessionMark("gw-2", 7, 9),
    ]


def test_health_is_replaced_per_gateway(store: ReadingStore) -> None:
    empty = ReadingColumns.empty()
    store.commit(empty, [], [], [HealthRecord("gw-1", 1_000, b'{"v":1}'), HealthRecord("gw-2", 1_000, b'{"v":1}')])
    store.commit(empty, [], [], [HealthRecord("gw-1", 2_000, b'{"v":2}')])
    assert sorted(store.latest_health(), key=lambda h: h.gateway) == [
        HealthRecord("gw-1", 2_000, b'{"v":2}'),
        HealthRecord("gw-2", 1_000, b'{"v":1}'),
    ]


def test_dead_letters_newest_first_with_their_bytes(store: ReadingStore) -> None:
    letters = [
        DeadLetter(1_000 + i, f"anju/v1/c/gw-{i}/data", "bad-json", f"detail {i}", bytes([i, 0xFF])) for i in range(3)
    ]
    store.commit(ReadingColumns.empty(), letters[:2], [])
    store.commit(ReadingColumns.empty(), letters[2:], [])
    assert store.dead_letters(10) == letters[::-1]
    assert store.dead_letters(2) == letters[:0:-1]


def test_everything_survives_close_and_reopen(opener: Opener) -> None:
    store = opener()
    rows = [(f"s-{i}", DAY0 + k * 60_000, float(i + k)) for i in range(3) for k in range(5)]
    letter = DeadLetter(5, "anju/v1/c/gw-1/data", "too-big", "1 MiB", b"\x00\x01")
    marks = [SessionMark("gw-1", 3, 4)]
    health = [HealthRecord("gw-1", 6, b"{}")]
    assert store.commit(cols(*rows), [letter], marks, health) == 15
    before = (
        store.readings("s-1", DAY0, DAY0 + DAY_MS, 100),
        store.latest(["s-0", "s-1", "s-2"]),
        store.buckets("s-2", DAY0, DAY0 + DAY_MS, HOUR_MS),
    )
    store.close()
    again = opener()
    after = (
        again.readings("s-1", DAY0, DAY0 + DAY_MS, 100),
        again.latest(["s-0", "s-1", "s-2"]),
        again.buckets("s-2", DAY0, DAY0 + DAY_MS, HOUR_MS),
    )
    assert after == before
    assert again.count_readings() == 15
    assert again.session_marks() == marks
    assert again.latest_health() == health
    assert again.dead_letters(10) == [letter]
    assert again.commit(cols(*rows), [], []) == 0, "a replay after reopening is still recognised"
    assert again.commit(cols(*rows, ("s-0", DAY0 + 10 * 60_000, 1.0)), [], []) == 1


def test_count_readings_counts_every_sensor(store: ReadingStore) -> None:
    assert store.count_readings() == 0
    commit(store, cols(*[(f"c-{i % 7}", DAY0 + i, float(i)) for i in range(1_000)]))
    commit(store, cols(*[(f"c-{i % 7}", DAY0 + i, float(i)) for i in range(500, 1_200)]))
    assert store.count_readings() == 1_200
