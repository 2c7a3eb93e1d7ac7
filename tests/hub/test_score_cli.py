"""``anju-hub score``: the live detector over a CSV, row for row, and clear errors on bad files."""

import csv
import datetime as dt
import subprocess
import sys
from pathlib import Path

import numpy as np

from hub.detection.anomaly import AnomalyConfig, AnomalyDetector

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "score", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_scores_are_the_live_detectors_row_for_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    start = dt.datetime(2026, 3, 1, 0, 0)
    n = 5_000  # more than one scoring chunk
    values = 20 + 3 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 0.3, n)
    values[4_000] += 5
    stamps = [(start + dt.timedelta(minutes=5 * i)).isoformat() for i in range(n)]
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value"])
        writer.writerows(zip(stamps, [repr(float(v)) for v in values], strict=True))
    out = tmp_path / "out.csv"
    result = _run("--input", str(source), "--output", str(out))
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[0] for r in rows[1:]] == stamps and len(rows) == n + 1
    # Naive timestamps are wall-clock time: the detector sees them with no offset.
    times = np.array(
        [int((start + dt.timedelta(minutes=5 * i)).replace(tzinfo=dt.UTC).timestamp() * 1000) for i in range(n)]
    )
    direct = AnomalyDetector(AnomalyConfig(utc_offset_ms=0)).score(np.zeros(n, np.intp), times, values)
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], direct.score, atol=1e-6)
    assert float(rows[4_001][2]) > 0.5


def test_bad_files_are_refused_naming_the_line_and_leave_no_output(tmp_path: Path) -> None:
    cases = {
        "time,val\n2026-01-01T00:00:00,1\n": "in.csv:1: header 'time,val', expected 'timestamp,value'",
        "timestamp,value\n2026-01-01T00:00:00,1\nyesterday,2\n": "in.csv:3: timestamp 'yesterday' is not ISO 8601",
        "timestamp,value\n2026-01-01T00:00:00,12 ppm\n": "in.csv:2: value '12 ppm' is not a number",
        "": "empty file",
    }
    for text, message in cases.items():
        source = tmp_path / "in.csv"
        source.write_text(text)
        out = tmp_path / "out.csv"
        result = _run("--input", str(source), "--output", str(out))
        assert result.returncode == 2 and message in result.stderr, (text, result.stderr)
        assert not out.exists() and not (tmp_path / "out.csv.partial").exists()
    result = _run("--input", str(tmp_path / "missing.csv"), "--output", str(tmp_path / "o.csv"))
    assert result.returncode == 2 and "missing.csv" in result.stderr


def test_timestamps_with_and_without_an_offset_in_one_file_are_refused_naming_the_line(tmp_path: Path) -> None:
    """Read as UTC, a time without an offset and one with ``+08:00`` are on different clocks (eight hours apart):
    a file that mixes them is an error at the first row unlike the first one (exit 2, no output), in either order,
    even after more than one scoring chunk has been written. All with offsets, or all without, is fine."""
    start = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    aware = [(start + dt.timedelta(minutes=5 * i)).isoformat() for i in range(5_000)]
    naive = [(start + dt.timedelta(minutes=5 * i)).replace(tzinfo=None).isoformat() for i in range(5_000)]
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    for stamps, line, says in [
        (
            [*aware[:4_500], *naive[4_500:]],
            4_502,
            "has no UTC offset, but line 2's ('2026-03-01T00:00:00+08:00') has one",
        ),
        ([*naive[:3], *aware[3:]], 5, "has a UTC offset, but line 2's ('2026-03-01T00:00:00') has none"),
    ]:
        source.write_text("timestamp,value\n" + "".join(f"{stamp},{i % 7}\n" for i, stamp in enumerate(stamps)))
        result = _run("--input", str(source), "--output", str(out))
        assert result.returncode == 2, result.stderr
        assert f"in.csv:{line}: timestamp '{stamps[line - 2]}' {says}" in result.stderr, result.stderr
        assert not out.exists() and not (tmp_path / "out.csv.partial").exists()
    for stamps in (aware, naive):
        source.write_text("timestamp,value\n" + "".join(f"{stamp},{i % 7}\n" for i, stamp in enumerate(stamps)))
        assert _run("--input", str(source), "--output", str(out)).returncode == 0


def test_an_output_directory_that_does_not_exist_is_named_as_given(tmp_path: Path) -> None:
    """The output is written through ``o.csv.partial`` next to it; the error names the path the user gave."""
    source = tmp_path / "in.csv"
    source.write_text("timestamp,value\n2026-01-01T00:00:00,1\n")
    out = tmp_path / "missing" / "o.csv"
    result = _run("--input", str(source), "--output", str(out))
    assert result.returncode == 2, result.stderr
    assert f"'{out}'" in result.stderr and "No such file or directory" in result.stderr, result.stderr
    assert ".partial" not in result.stderr, result.stderr


def test_explain_column_says_why_in_chinese_then_english(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    lines = ["timestamp,value"] + [
        f"2026-01-01T{h:02d}:{m:02d}:00+08:00,{1.0 + (m % 2) * 0.1}" for h in range(5) for m in range(0, 60, 5)
    ]
    lines.append("2026-01-01T05:00:00+08:00,9.0")
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    assert _run("--input", str(source), "--output", str(out), "--explain").returncode == 0
    with out.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][3] == "explanation" and rows[1][3] == "学习中 / still learning"
    assert rows[-1][3].startswith("突变") and "spike" in rows[-1][3] and float(rows[-1][2]) > 0.5
