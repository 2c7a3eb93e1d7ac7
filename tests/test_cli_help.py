"""Each deployable has a console script with --help and subcommands."""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("script", "subcommands"),
    [
        ("anju-hub", ["serve", "check-config", "edge-config", "demo", "score", "rules"]),
        ("anju-edge", ["run", "check-config"]),
        ("anju-sim", ["run", "check", "registers", "load"]),
    ],
)
def test_console_script_help_lists_its_subcommands(script: str, subcommands: list[str]) -> None:
    result = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for name in subcommands:
        assert name in result.stdout, f"{script} --help does not mention {name}"
        sub = subprocess.run(
            [str(BIN / script), name, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert sub.returncode == 0 and "usage:" in sub.stdout, sub.stderr


def test_a_missing_subcommand_is_an_error_not_a_crash() -> None:
    result = subprocess.run([str(BIN / "anju-hub")], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "required" in result.stderr
