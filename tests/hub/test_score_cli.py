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
