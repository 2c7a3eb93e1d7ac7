"""``anju-hub rules test`` on a small CSV, run as the real command in a subprocess."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _rules_test(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", "rules", "test", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


@pytest.fixture
def gas_csv(tmp_path: Path) -> Path:
    file = tmp_path / "gas.csv"
    file.write_text(
        "timestamp,value\n"
        "2025-06-01T08:00:00+08:00,3.0\n"
        "2025-06-01T08:00:10+08:00,26.5\n"
        "2025-06-01T08:00:20,24.0\n"  # no offset: the rule set's local time (Asia/Shanghai)
        "2025-06-01T00:00:30Z,nan\n"
        "2025-06-01T08:00:40+08:00,not-a-number\n"
        "2025-06-01T08:00:15+08:00,40.0\n"  # out of order: not judged
        "2025-06-01T08:00:50+08:00,19.5\n",
        encoding="utf-8",
    )
    return file


def test_rules_test_prints_and_writes_what_the_rule_would_have_done(gas_csv: Path, tmp_path: Path) -> None:
    output = tmp_path / "events.csv"
    result = _rules_test("--rule", "gas-level-1", "--kind", "gas", "--input", str(gas_csv), "--output", str(output))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("2025-06-01T08:00:10.000+08:00  触发 firing ") and "26.5 %LEL (limit 25)" in lines[0]
    assert lines[1].startswith("2025-06-01T08:00:50.000+08:00  恢复 cleared")
    assert "触发 1 次，恢复 1 次" in lines[2] and "乱序 1，无效值 1，无法解析 1" in lines[2]
    assert "fired 1, cleared 1" in lines[3]
    assert "line 6" in result.stderr
    with output.open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["status"], r["grade"], r["rule"], r["threshold"]) for r in rows] == [
        ("firing", "III", "level-1 alarm", "25.0"),
        ("cleared", "III", "level-1 alarm", "25.0"),
    ]


def test_rules_test_takes_a_rules_file(gas_csv: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {id: gas-low, kind: gas, name: low, name_zh: 低限, grade: IV, source: 'test: low', tag: D,\n"
        "     level: {above: 2.0}, hysteresis: {clear: 1.0}}\n",
        encoding="utf-8",
    )
    result = _rules_test("--rules", str(rules), "--rule", "gas-low", "--kind", "gas", "--input", str(gas_csv))
    assert result.returncode == 0, result.stderr
    assert "触发 1 次，恢复 0 次" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rule", "gas-level-9", "--kind", "gas"], "no rule 'gas-level-9'"),
        (["--rule", "smoke-alarm", "--kind", "gas"], "is for kind 'smoke'"),
        (["--rule", "gas-level-1", "--kind", "radon"], "unknown kind"),
    ],
)
def test_rules_test_refuses_bad_arguments_with_exit_2(gas_csv: Path, args: list[str], message: str) -> None:
    result = _rules_test(*args, "--input", str(gas_csv))
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_rules_test_refuses_a_csv_without_the_header(tmp_path: Path) -> None:
    file = tmp_path / "bad.csv"
    file.write_text("time,val\n2025-06-01T08:00:00+08:00,3\n", encoding="utf-8")
    result = _rules_test("--rule", "gas-level-1", "--kind", "gas", "--input", str(file))
    assert result.returncode == 2 and "header timestamp,value" in result.stderr
