"""What only the InfluxDB backend has: its schema on the server, rollups, retention, errors, auth, request shape.

Against a real InfluxDB 1.x (Debian's package) started per test; the shared behaviour is in test_store_contract.
"""

import math
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from hub.demo.influxd import find_influxd, running_influxd
from hub.demo.processes import free_port
from hub.store.base import ReadingColumns, ReadingFlag, SessionMark, StoredReading
from hub.store.influx import ROLLUP_MEASUREMENT, InfluxStore
from hub.store.influx_http import InfluxError, InfluxHttp, InfluxTarget
from tests.conftest import require_service

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def cols(*rows: tuple[str, int, float], flags: int = 0) -> ReadingColumns:
    return ReadingColumns.of(StoredReading(s, t, v, "gw-1", flags) for s, t, v in rows)


@pytest.fixture
def target(influxdb: str) -> InfluxTarget:
    return InfluxTarget.v1(url=influxdb, database=f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(target: InfluxTarget, tmp_path: Path) -> Iterator[InfluxStore]:
    store = InfluxStore(target=target, community="hongxing", meta_path=tmp_path / "meta.sqlite3")
    yield store
    store.close()


def query(target: InfluxTarget, statement: str) -> list[list[object]]:
    http = InfluxHttp(target=target)
    try:
        [result] = http.query([statement])
    finally:
        http.close()
    return [list(row) for series in result for row in series.values]


def write_requests(url: str) -> int:
    """InfluxDB's own count of /write requests it has served (its /debug/vars statistics)."""
    stats = httpx.get(f"{url}/debug/vars", trust_env=False).json()
    return sum(int(v["values"].get("writeReq", 0)) for k, v in stats.items() if k.startswith("httpd"))


def test_open_creates_the_database_retention_policies_and_rollup_query(target: InfluxTarget, tmp_path: Path) -> None:
    def policies() -> dict[str, tuple[str, bool]]:
        return {
            str(r[0]): (str(r[1]), bool(r[4])) for r in query(target, f'SHOW RETENTION POLICIES ON "{target.database}"')
        }

    def rollup_queries() -> list[str]:
        http = InfluxHttp(target=target)
        try:
            [result] = http.query(["SHOW CONTINUOUS QUERIES"])
        finally:
            http.close()
        return [str(row[1]) for s in result if s.name == target.database for row in s.values]

    InfluxStore(target=target, community="c", meta_path=tmp_path / "m.sqlite3").close()
    assert policies() == {
        "autogen": ("0s", False),
        "anju_raw": ("720h0m0s", True),
        "anju_rollup_1m": ("8760h0m0s", False),
    }
    [cq] = rollup_queries()
    assert "RESAMPLE EVERY 1m FOR 5m" in cq and f"INTO {target.database}.anju_rollup_1m.{ROLLUP_MEASUREMENT}" in cq
    # The deployment file changed: the policies follow it; opening again changes nothing else.
    InfluxStore(
        target=target, community="c", meta_path=tmp_path / "m.sqlite3", raw_retention_days=7, rollup_retention_days=90
    ).close()
    assert policies()["anju_raw"] == ("168h0m0s", True)
    assert policies()["anju_rollup_1m"] == ("2160h0m0s", False)
    assert rollup_queries() == [cq]


def test_buckets_beyond_the_raw_retention_come_from_the_rollups(target: InfluxTarget, tmp_path: Path) -> None:
    start = (now_ms() // DAY_MS - 2) * DAY_MS
    times = start + np.arange(0, 36 * HOUR_MS, 11_000, dtype=np.int64)
    values = np.round(np.random.default_rng(3).uniform(-5, 40, len(times)), 2)
    writer = InfluxStore(target=target, community="hongxing", meta_path=tmp_path / "a.sqlite3")
    try:
        writer.commit(cols(*zip(["t-1"] * len(times), times.tolist(), values.tolist(), strict=True)), [], [])
        writer.rebuild_rollups(start, start + 36 * HOUR_MS)
        raw = writer.buckets("t-1", start, start + 2 * DAY_MS, HOUR_MS)
    finally:
        writer.close()
    # The same data seen 31 days later: raw points are past the retention horizon, the rollups answer.
    later = InfluxStore(
        target=target, community="hongxing", meta_path=tmp_path / "b.sqlite3", clock=lambda: time.time() + 31 * 86_400
    )
    try:
        rolled = later.buckets("t-1", start, start + 2 * DAY_MS, HOUR_MS)
        daily = later.buckets("t-1", start, start + 2 * DAY_MS, DAY_MS)
    finally:
        later.close()
    assert len(raw) == 36
    assert [(b.start_ms, b.count, b.min, b.max) for b in rolled] == [(b.start_ms, b.count, b.min, b.max) for b in raw]
    assert [b.mean for b in rolled] == pytest.approx([b.mean for b in raw], rel=1e-12)
    first_day = times < start + DAY_MS
    assert [(b.start_ms, b.count, b.min, b.max) for b in daily] == [
        (start, int(first_day.sum()), float(values[first_day].min()), float(values[first_day].max())),
        (start + DAY_MS, int((~first_day).sum()), float(values[~first_day].min()), float(values[~first_day].max())),
    ]
    assert [b.mean for b in daily] == pytest.approx([values[first_day].mean(), values[~first_day].mean()], rel=1e-12)


def test_maintain_recomputes_the_rollups_of_late_readings(
    store: InfluxStore, target: InfluxTarget, tmp_path: Path
) -> None:
    now = now_ms()
    base = (now - 3 * HOUR_MS) // MINUTE_MS * MINUTE_MS
    late = [("g-1", base + k * 20_000, float(k)) for k in range(9)]  # three minutes, three readings each
    store.commit(cols(*late), [], [])
    store.commit(cols(("g-1", now, 1.0)), [], [])  # on time: the continuous query's business, not maintain's
    dirty = sqlite3.connect(tmp_path / "meta.sqlite3")
    assert dirty.execute("SELECT start_ms, end_ms FROM influx_rollup_dirty").fetchall() == [(late[0][1], late[-1][1])]
    store.maintain(now)
    rollup = f'"{target.database}"."anju_rollup_1m"."{ROLLUP_MEASUREMENT}"'
    rows = query(target, f"SELECT value_count, value_min, value_max, value_sum FROM {rollup} WHERE sensor = 'g-1'")
    assert rows == [[base + m * MINUTE_MS, 3, 3.0 * m, 3.0 * m + 2, 9.0 * m + 3] for m in range(3)]
    assert dirty.execute("SELECT count(*) FROM influx_rollup_dirty").fetchone() == (0,)
    dirty.close()


def test_readings_older_than_the_raw_retention_are_counted_not_written(store: InfluxStore) -> None:
    now = now_ms()
    readings = cols(("o-1", now - 40 * DAY_MS, 1.0), ("o-1", now - 1_000, 2.0))
    assert store.commit(readings, [], [SessionMark("gw-1", 1, 1)]) == 1
    assert store.beyond_retention == 1
    assert store.count_readings() == 1
    assert store.session_marks() == [SessionMark("gw-1", 1, 1)], "the gateway is acked: it must not replay forever"


def test_a_refused_write_raises_with_status_and_message_and_no_mark_is_written(
    store: InfluxStore, target: InfluxTarget
) -> None:
    t = now_ms()
    store.commit(cols(("x-1", t - 1_000, 1.0)), [], [])  # the sensor's high mark is known: no query before the write
    query(target, f'DROP DATABASE "{target.database}"')
    with pytest.raises(InfluxError) as caught:
        store.commit(cols(("x-1", t, 1.0)), [], [SessionMark("gw-1", 1, 9)])
    assert caught.value.status == 404
    assert caught.value.path == "/write"
    assert "database not found" in caught.value.message
    assert "HTTP 404" in str(caught.value)
    assert store.session_marks() == [], "a mark must never be ahead of its readings"
    many = cols(*[("x-1", t + 1 + k, float(k)) for k in range(12_000)])  # three requests, two in flight
    with pytest.raises(InfluxError, match="HTTP 404"):
        store.commit(many, [], [SessionMark("gw-1", 1, 10)])
    assert store.session_marks() == []


def test_a_staged_round_the_server_refused_raises_at_its_commit_and_a_retry_stores_it(
    store: InfluxStore, target: InfluxTarget
) -> None:
    t = now_ms()
    store.commit(cols(("y-1", t - 1_000, 1.0)), [], [])
    query(target, f'DROP DATABASE "{target.database}"')
    round_ = cols(*[("y-1", t + k, float(k)) for k in range(12_000)])  # three requests
    store.stage(round_)
    with pytest.raises(InfluxError, match="HTTP 404"):
        store.commit(round_, [], [SessionMark("gw-1", 1, 1)])
    assert store.session_marks() == [], "a mark must never be ahead of its readings"
    query(target, f'CREATE DATABASE "{target.database}"')
    query(target, f'CREATE RETENTION POLICY "anju_raw" ON "{target.database}" DURATION 30d REPLICATION 1 DEFAULT')
    # The hub retries with the same round: the sent-but-refused points are checked, found missing and written.
    assert store.commit(round_, [], [SessionMark("gw-1", 1, 1)]) == 12_000
    assert store.session_marks() == [SessionMark("gw-1", 1, 1)]
    assert store.count_readings() == 12_000


def test_no_server_raises_without_a_status(tmp_path: Path) -> None:
    target = InfluxTarget.v1(url=f"http://127.0.0.1:{free_port()}", database="anju")
    with pytest.raises(InfluxError) as caught:
        InfluxStore(target=target, community="c", meta_path=tmp_path / "m.sqlite3", timeout_s=2.0)
    assert caught.value.status is None
    assert "ConnectError" in caught.value.message


def test_nan_is_refused_before_anything_is_written(store: InfluxStore) -> None:
    readings = cols(("ok-1", now_ms(), 1.0), ("bad-3", now_ms(), math.nan))
    with pytest.raises(ValueError, match="'bad-3'"):
        store.commit(readings, [], [SessionMark("gw-1", 1, 1)])
    assert store.count_readings() == 0
    assert store.session_marks() == []


def test_a_large_commit_goes_in_requests_of_chunk_lines(influxdb: str, target: InfluxTarget, tmp_path: Path) -> None:
    store = InfluxStore(target=target, community="c", meta_path=tmp_path / "m.sqlite3", chunk_lines=1_000)
    try:
        now = now_ms()
        rows = [(f"s-{i % 1_500}", now - 60_000 + i // 1_500, float(i)) for i in range(12_345)]  # > 1,024 sensors
        before = write_requests(influxdb)
        assert store.commit(cols(*rows), [], []) == 12_345
        assert write_requests(influxdb) - before == 13
        assert store.count_readings() == 12_345
        assert store.commit(cols(*rows), [], []) == 0
        assert write_requests(influxdb) - before == 13, "a replay of stored points writes nothing"
    finally:
        store.close()


def test_communities_sharing_a_database_see_only_their_own(target: InfluxTarget, tmp_path: Path) -> None:
    one = InfluxStore(target=target, community="one", meta_path=tmp_path / "1.sqlite3")
    two = InfluxStore(target=target, community="two", meta_path=tmp_path / "2.sqlite3")
    try:
        t = now_ms()
        assert one.commit(cols(("gas-1", t, 1.0)), [], []) == 1
        assert two.commit(cols(("gas-1", t, 2.0)), [], []) == 1, "same sensor id and time, another community"
        assert [r.value for r in one.readings("gas-1", t, t + 1, 10)] == [1.0]
        assert two.latest(["gas-1"])["gas-1"].value == 2.0
        assert one.count_readings() == two.count_readings() == 1
    finally:
        one.close()
        two.close()


def test_after_reopening_a_sensor_with_a_future_skewed_point_still_counts_exactly(
    target: InfluxTarget, tmp_path: Path
) -> None:
    t = now_ms()
    first = InfluxStore(target=target, community="c", meta_path=tmp_path / "m.sqlite3")
    first.commit(cols(("k-1", t + 5 * DAY_MS, 9.0), flags=ReadingFlag.CLOCK_SKEW), [], [])
    first.commit(cols(("k-1", t - 2_000, 1.0)), [], [])
    assert first.commit(cols(("k-1", t - 1_000, 2.0)), [], []) == 1
    first.close()
    again = InfluxStore(target=target, community="c", meta_path=tmp_path / "m.sqlite3")
    try:
        batch = cols(("k-1", t - 2_000, 1.0), ("k-1", t - 1_000, 2.0), ("k-1", t, 3.0))
        assert again.commit(batch, [], []) == 1
        assert again.commit(cols(("k-1", t + 5 * DAY_MS, 9.0), flags=ReadingFlag.CLOCK_SKEW), [], []) == 0
        assert again.count_readings() == 4
        assert again.latest(["k-1"])["k-1"] == StoredReading("k-1", t, 3.0, "gw-1")
    finally:
        again.close()


def test_basic_auth_on_a_server_with_auth_enabled(tmp_path: Path) -> None:
    binary = find_influxd()
    require_service("influxdb", binary)
    assert binary is not None
    with running_influxd(binary, tmp_path / "auth", auth_enabled=True) as server:
        url = server.url
        # With no user yet, 1.x lets anyone create the first admin.
        created = httpx.post(
            f"{url}/query", data={"q": "CREATE USER hub WITH PASSWORD 'p4ss-word' WITH ALL PRIVILEGES"}, trust_env=False
        )
        assert created.status_code == 200, created.text
        target = InfluxTarget.v1(url=url, database="anju", username="hub", password="p4ss-word")
        assert "p4ss-word" not in repr(target)
        store = InfluxStore(target=target, community="c", meta_path=tmp_path / "m.sqlite3")
        try:
            assert store.commit(cols(("a-1", now_ms(), 1.0)), [], []) == 1
            assert store.count_readings() == 1
        finally:
            store.close()
        wrong = InfluxTarget.v1(url=url, database="anju", username="hub", password="wrong")
        with pytest.raises(InfluxError) as caught:
            InfluxStore(target=wrong, community="c", meta_path=tmp_path / "w.sqlite3")
        assert caught.value.status == 401
        assert "authorization failed" in caught.value.message


def test_the_v2_target_differs_only_in_path_parameters_and_auth_header() -> None:
    v1 = InfluxTarget.v1(url="http://127.0.0.1:8086/", database="anju", retention_policy="raw")
    v2 = InfluxTarget.v2(
        url="http://127.0.0.1:8086",
        org="district",
        bucket="anju",
        token="t0ken-secret",
        database="anju",
        retention_policy="raw",
    )
    assert (v1.url, v1.write_path, dict(v1.write_params), dict(v1.headers)) == (
        "http://127.0.0.1:8086",
        "/write",
        {"db": "anju", "rp": "raw", "precision": "ms"},
        {},
    )
    assert (v2.url, v2.write_path, dict(v2.write_params), dict(v2.headers)) == (
        "http://127.0.0.1:8086",
        "/api/v2/write",
        {"org": "district", "bucket": "anju", "precision": "ms"},
        {"Authorization": "Token t0ken-secret"},
    )
    assert (v2.database, v2.retention_policy, v2.rollup_retention_policy) == ("anju", "raw", None)
    assert "t0ken-secret" not in repr(v2)
    with pytest.raises(ValueError, match="token"):
        InfluxTarget.v2(url="http://x", org="o", bucket="b", token="", database="d", retention_policy="r")
