"""The embedded store's own mechanics (the behaviour every backend shares is in test_store_contract.py).

Compaction, closing a day's rollup parts, retention and reopening must never change what a query answers;
the watermark's fast path must never store a duplicate; and a SIGKILL at any moment — mid-commit or
mid-compaction — loses nothing that ``commit`` had returned for.
"""

import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from hub.store.base import Bucket, ReadingColumns, ReadingFlag, StoredReading
from hub.store.chunks import DAY_MS, MINUTE_MS, ChunkStore

REPO = Path(__file__).resolve().parents[2]
DAY0 = 20_420 * DAY_MS
"""2025-11-28T00:00Z: a UTC day boundary, so the tests can place readings on either side of one."""


def columns(sensor: str, times: list[int], values: list[float], flags: int = 0) -> ReadingColumns:
    return ReadingColumns.of(StoredReading(sensor, t, v, "gw", flags) for t, v in zip(times, values, strict=True))


def answers(store: ChunkStore, sensors: list[str], start: int, end: int) -> tuple[object, ...]:
    """Everything a dashboard could ask about these sensors, to compare before and after a change of layout."""
    return (
        store.count_readings(),
        [store.readings(s, start, end, 10**9) for s in sensors],
        [store.buckets(s, start, end, width) for s in sensors for width in (MINUTE_MS, 3_600_000, DAY_MS)],
        store.latest(sensors),
    )


def test_compaction_closing_days_and_reopening_change_no_answer(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = ChunkStore(path=tmp_path / "r.anju", compact_readings=10**9)
    sensors = [f"s{i}" for i in range(5)]
    start = DAY0 - 3 * 3_600_000  # spans a UTC midnight
    for round_ in range(6):
        for s in sensors:
            times = start + round_ * 7_200_000 + np.sort(rng.choice(7_200_000, 50, replace=False))
            store.commit(columns(s, times.tolist(), (rng.integers(0, 400, 50) / 4).tolist()), [], [])
        if round_ % 2:
            store.compact()  # some rounds compacted, some still in the tail: queries join both
    window = (start, start + 12 * 3_600_000)
    before = answers(store, sensors, *window)
    store.compact()
    assert answers(store, sensors, *window) == before
    store.maintain(DAY0 + 5 * DAY_MS)  # closes DAY0 - 1 and DAY0 into one rollup row per sensor
    assert answers(store, sensors, *window) == before
    parts = store._reader.execute("SELECT count(*) FROM rollups WHERE day < ?", (DAY0 // DAY_MS + 1,)).fetchone()
    assert parts == (2 * len(sensors),), "a finished day is one rollup row per sensor"
    store.close()
    reopened = ChunkStore(path=tmp_path / "r.anju")
    assert answers(reopened, sensors, *window) == before
    reopened.close()


def test_a_replay_after_compaction_stores_nothing_twice(tmp_path: Path) -> None:
    store = ChunkStore(path=tmp_path / "r.anju")
    times = [DAY0 + i * 1000 for i in range(100)]
    assert store.commit(columns("a", times, [1.0] * 100), [], []) == 100
    store.compact()
    # Older than the watermark: the exact path, against the chunks; one reading really is new (a hole).
    replay = columns("a", [*times[10:20], DAY0 + 500], [2.0] * 11)
    assert store.commit(replay, [], []) == 1
    assert store.count_readings() == 101
    assert [r.value for r in store.readings("a", DAY0, DAY0 + 1000, 10)] == [1.0, 2.0]
    store.close()


def test_skewed_readings_do_not_move_the_watermark_or_the_latest(tmp_path: Path) -> None:
    store = ChunkStore(path=tmp_path / "r.anju")
    future = DAY0 + 400 * DAY_MS
    assert store.commit(columns("a", [DAY0, future], [1.0, 9.0], ReadingFlag.NONE), [], []) == 2
    store.commit(columns("a", [future + 1], [9.5], ReadingFlag.CLOCK_SKEW), [], [])
    latest = store.latest(["a"])["a"]
    assert (latest.time_ms, latest.flags) == (future, 0), "an unflagged reading is the newest; flagged never is"
    skewed = columns("b", [future], [5.0], ReadingFlag.CLOCK_SKEW)
    assert store.commit(skewed, [], []) == 1
    assert store.latest(["b"]) == {}, "only a skewed reading: no latest value to show"
    assert store.commit(skewed, [], []) == 0, "a skewed reading is still deduplicated"
    assert store.commit(columns("b", [DAY0, future], [1.0, 6.0]), [], []) == 1, "same time as the skewed one"
    assert store.readings("b", future, future + 1, 5)[0].flags == ReadingFlag.CLOCK_SKEW
    store.close()


def test_retention_drops_old_raw_data_and_keeps_rollups(tmp_path: Path) -> None:
    store = ChunkStore(path=tmp_path / "r.anju", raw_retention_days=2, rollup_retention_days=5)
    times = [DAY0 + d * DAY_MS + 60_000 for d in range(8)]
    store.commit(columns("a", times, [float(d) for d in range(8)]), [], [])
    store.compact()
    store.maintain(DAY0 + 8 * DAY_MS)
    assert [r.value for r in store.readings("a", DAY0, DAY0 + 9 * DAY_MS, 100)] == [6.0, 7.0]
    assert store.count_readings() == 2
    days = store.buckets("a", DAY0, DAY0 + 9 * DAY_MS, DAY_MS)
    assert [b.start_ms for b in days] == [DAY0 + d * DAY_MS for d in range(3, 8)]
    assert days[0] == Bucket(DAY0 + 3 * DAY_MS, 1, 3.0, 3.0, 3.0)
    store.close()


def test_a_read_only_store_sees_what_the_writer_committed(tmp_path: Path) -> None:
    writer = ChunkStore(path=tmp_path / "r.anju")
    writer.commit(columns("a", [DAY0, DAY0 + 1], [1.0, 2.0]), [], [])
    writer.compact()
    writer.commit(columns("a", [DAY0 + 2], [3.0]), [], [])
    reader = ChunkStore(path=tmp_path / "r.anju", read_only=True)
    assert [r.value for r in reader.all_readings()] == [1.0, 2.0, 3.0]
    reader.close()
    writer.close()


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from hub.store.base import ReadingColumns
    from hub.store.chunks import ChunkStore

    store = ChunkStore(path=Path(sys.argv[1]), compact_readings=20_000)
    start, base = int(sys.argv[2]), int(sys.argv[3])
    sensors = [f"s{i}" for i in range(100)]
    for round_ in range(start, start + 10_000):
        n = 2_000
        times = base + round_ * 20_000 + np.arange(n, dtype=np.int64) // 100 * 1000
        cols = ReadingColumns([sensors[i % 100] for i in range(n)], ["gw"] * n, times,
                              np.full(n, float(round_)), np.zeros(n, np.uint8))
        store.commit(cols, [], [])
        sys.stdout.write(f"{round_}\\n")  # committed: what the hub would now hub-ack; one line to the parent
        sys.stdout.flush()
        store.maintain()
    """
)


def test_sigkill_at_any_moment_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "r.anju"
    rng = random.Random(11)
    acked: list[int] = []
    next_round = 0
    base = time.time_ns() // 1_000_000 - DAY_MS  # recent: retention in maintain() must not touch it
    for _kill in range(6):
        with subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(next_round), str(base)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        ) as child:
            assert child.stdout is not None
            deadline = time.monotonic() + 60
            wanted = rng.randint(3, 25)  # past several compactions (every 10 rounds) at different phases
            lines = 0
            while lines < wanted and time.monotonic() < deadline:
                line = child.stdout.readline()
                if not line:
                    break
                acked.append(int(line))
                lines += 1
            time.sleep(rng.uniform(0, 0.05))
            child.send_signal(signal.SIGKILL)
            for line in child.stdout:  # rounds it reported before dying were committed too
                acked.append(int(line))
            child.wait(timeout=10)
        assert lines == wanted, "the writer stopped early"
        next_round = max(acked) + 1
    store = ChunkStore(path=path)
    stored_rounds = {int(r.value) for r in store.all_readings()}
    missing = set(acked) - stored_rounds
    assert not missing, f"rounds reported committed but lost after SIGKILL: {sorted(missing)[:10]}"
    assert store.count_readings() == 2_000 * len(stored_rounds)
    store.close()


def test_compaction_beside_commits_and_queries_loses_and_doubles_nothing(tmp_path: Path) -> None:
    store = ChunkStore(path=tmp_path / "r.anju", compact_readings=3_000)
    sensors = [f"s{i}" for i in range(20)]
    stop = threading.Event()
    seen: list[int] = []
    failures: list[BaseException] = []

    def compact_and_query() -> None:
        try:
            while not stop.is_set():
                store.compact()
                seen.append(len(store.readings("s3", 0, 2**62, 10**9)))
                time.sleep(0.002)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    worker = threading.Thread(target=compact_and_query)
    worker.start()
    try:
        for round_ in range(150):
            times = [DAY0 + round_ * 1000 + i for i in range(50)]
            for sensor in sensors:
                assert store.commit(columns(sensor, times, [float(round_)] * 50), [], []) == 50
            if round_ % 7 == 6:  # a replay of the round before: the exact path while compaction may run
                assert store.commit(columns("s3", [t - 1000 for t in times], [0.0] * 50), [], []) == 0
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not failures, failures
    assert seen == sorted(seen), "a query saw readings disappear while the tail moved into chunks"
    store.compact()
    assert store.count_readings() == 150 * 50 * 20
    rows = store.readings("s3", 0, 2**62, 10**9)
    assert [r.time_ms for r in rows] == [DAY0 + r * 1000 + i for r in range(150) for i in range(50)]
    assert [r.value for r in rows] == [float(r) for r in range(150) for _ in range(50)], "a replay overwrote"
    store.close()
