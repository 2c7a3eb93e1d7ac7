import math
import time

import numpy as np
import pytest

from hub.store.base import ReadingColumns, ReadingFlag, StoredReading
from hub.store.influx_http import InfluxHttp, InfluxTarget
from hub.store.line_protocol import LineEncoder, encode, escape_tag


def columns(*rows: StoredReading) -> ReadingColumns:
    return ReadingColumns.of(rows)


def test_exact_bytes_of_a_small_example() -> None:
    readings = columns(
        StoredReading("gas-1", 1_700_000_000_123, 12.5, "gw-b1"),
        StoredReading("temp-2", 1_700_000_000_124, -0.1, "gw-b1", int(ReadingFlag.CLOCK_SKEW)),
        StoredReading("gas-1", 1_700_000_001_000, 1e20, "gw-b1"),
        StoredReading("gas-1", 1_700_000_002_000, 3.0, "gw-b1"),
    )
    assert encode(readings, community="hongxing") == [
        b"reading,community=hongxing,gateway=gw-b1,sensor=gas-1 value=12.5,flags=0i 1700000000123\n"
        b"reading,community=hongxing,gateway=gw-b1,sensor=temp-2 value=-0.1,flags=1i 1700000000124\n"
        b"reading,community=hongxing,gateway=gw-b1,sensor=gas-1 value=1e+20,flags=0i 1700000001000\n"
        b"reading,community=hongxing,gateway=gw-b1,sensor=gas-1 value=3.0,flags=0i 1700000002000\n"
    ]


def test_rows_select_and_chunks_split() -> None:
    readings = columns(*(StoredReading(f"s-{i}", 1_000 + i, float(i), "gw") for i in range(5)))
    bodies = encode(readings, community="c", rows=np.array([4, 0, 2, 3, 1]), chunk_lines=2)
    lines = [line for body in bodies for line in body.decode().splitlines()]
    assert [len(body.decode().splitlines()) for body in bodies] == [2, 2, 1]
    assert all(body.endswith(b"\n") for body in bodies)
    assert [line.split(" ")[0].rsplit("=", 1)[1] for line in lines] == ["s-4", "s-0", "s-2", "s-3", "s-1"]
    assert encode(readings, community="c", rows=[]) == []
    assert encode(ReadingColumns.empty(), community="c") == []


def test_values_round_trip_exactly_through_their_text() -> None:
    values = [0.1 + 0.2, 1 / 3, -2.5e-308, 1.7976931348623157e308, 5e-324, 0.0, -0.0, 123456789.125]
    readings = columns(*(StoredReading("x", i, v, "gw") for i, v in enumerate(values)))
    [body] = encode(readings, community="c")
    parsed = [float(line.split(" value=")[1].split(",")[0]) for line in body.decode().splitlines()]
    assert parsed == values
    assert [math.copysign(1, v) for v in parsed] == [math.copysign(1, v) for v in values]


def test_tag_escaping() -> None:
    assert escape_tag("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_tag("back\\slash") == "back\\slash", "1.x keeps backslashes in tags as they are"
    readings = columns(StoredReading("s 1", 5, 1.0, "g,1"))
    assert encode(readings, community="c=x") == [
        b"reading,community=c\\=x,gateway=g\\,1,sensor=s\\ 1 value=1.0,flags=0i 5\n"
    ]


def test_an_encoder_kept_across_rounds_writes_what_a_fresh_one_does_within_its_bound() -> None:
    """The kept tag parts are only a cache: rounds that bring new sensors, repeat old ones or overflow the bound
    (everything forgotten, rebuilt as met) encode exactly as one-off encodes do."""
    rng = np.random.default_rng(7)
    kept = LineEncoder("c", max_heads=8)
    for round_no in range(20):
        count = int(rng.integers(1, 40))
        readings = columns(
            *(
                StoredReading(f"s-{int(rng.integers(0, 12))}", 1_000 * round_no + i, float(i) / 3, f"gw-{i % 3}", i % 2)
                for i in range(count)
            )
        )
        chunk = int(rng.integers(1, 10))
        assert kept.encode(readings, chunk_lines=chunk) == encode(readings, community="c", chunk_lines=chunk)
        pairs = set(zip(readings.sensor, readings.gateway, strict=True))
        assert len(kept._heads) <= max(8, len(pairs)), "a round's own pairs are the most kept past the bound"


@pytest.mark.parametrize("bad", ["", "two\nlines", "cr\r", "ends\\"])
def test_tags_that_cannot_be_written_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="tag value"):
        escape_tag(bad)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_naming_the_sensor(value: float) -> None:
    readings = columns(StoredReading("ok-1", 1, 1.0, "gw"), StoredReading("gas-7", 2_000, value, "gw"))
    with pytest.raises(ValueError, match=r"sensor 'gas-7' at 2000 ms .*no NaN or infinity"):
        encode(readings, community="c")
    with pytest.raises(ValueError, match="sensor 'gas-7'"):
        LineEncoder("c").bodies(readings)  # raised when asked, before any body could have been sent
    assert encode(readings, community="c", rows=[0]), "rows without the bad value still encode"


def test_escaped_tags_arrive_as_written_in_a_real_influxdb(influxdb: str) -> None:
    """The escaping is InfluxDB's own reading of it, not only our idea of the spec."""
    http = InfluxHttp(target=InfluxTarget.v1(url=influxdb, database="lp", rollup_retention_policy=None))
    try:
        http.query(['CREATE DATABASE "lp"', 'CREATE RETENTION POLICY "anju_raw" ON "lp" DURATION 30d REPLICATION 1'])
        now_ms = 1_000 * int(time.time())
        readings = columns(StoredReading("s 1,=x", now_ms, 2.5, "g=1 b\\c"))
        for body in encode(readings, community="c x,y"):
            assert http.write(body) == 0
        [series] = http.query(['SELECT value, flags, community, gateway, sensor FROM "lp"."anju_raw"."reading"'])
        assert [list(row) for s in series for row in s.values] == [[now_ms, 2.5, 0, "c x,y", "g=1 b\\c", "s 1,=x"]]
    finally:
        http.close()
