"""The anju-sim command line: help, check, registers, errors, and a real run stopped by SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_sim.cli import main
from firmware_sim.truth import read_truth


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "check", "registers"):
        assert command in out


def test_run_help_shows_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for option in ("--port", "--truth", "--seed", "--speed", "--duration", "--exit-after", "--host"):
        assert option in out


@pytest.mark.parametrize(("name", "incident"), [("kitchen_gas_leak.yaml", "grade 2"), ("quiet.yaml", "no incidents")])
def test_check_accepts_the_shipped_scenarios(
    scenarios: Path, name: str, incident: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(scenarios / name)]) == 0
    out = capsys.readouterr().out
    assert "20 devices in 2 gateways" in out
    assert incident in out


def test_check_names_the_error_of_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "community: hongxing\nseed: 1\nduration_s: 5\ngateways:\n  gw-1:\n    - {sensor: x, kind: radon, unit_id: 1}\n"
    )
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6: gateways.gw-1[0].kind: unknown kind" in err
    assert "'radon'" in err


def test_registers_prints_the_map(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registers"]) == 0
    out = capsys.readouterr().out
    assert "history ring (addresses 16-135)" in out
    assert "gas          code 1  exponent -1" in out


def test_run_needs_a_port_per_gateway(scenarios: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(scenarios / "quiet.yaml"), "--port", "gw-b1=15020"]) == 2
    assert "gw-b2" in capsys.readouterr().err


def test_run_stops_cleanly_on_sigterm(scenarios: Path, tmp_path: Path, free_port: Callable[[], int]) -> None:
    truth = tmp_path / "truth.jsonl"
    command = [
        sys.executable, "-m", "firmware_sim", "run", str(scenarios / "quiet.yaml"),
        "--port", f"gw-b1={free_port()}", "--port", f"gw-b2={free_port()}",
        "--truth", str(truth), "--speed", "20",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and process.poll() is None:
                if truth.exists() and sum(r["type"] == "reading" for r in read_truth(truth)) >= 40:
                    break
                time.sleep(0.05)
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=5)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "simulator stopped" in err
    records = read_truth(truth)
    assert records[0]["type"] == "run"
    assert len(records) == len(truth.read_text().splitlines())  # every line whole
    assert sum(r["type"] == "reading" for r in records) % 20 == 0  # whole ticks only


def test_run_reports_a_taken_port(
    scenarios: Path, free_port: Callable[[], int], caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["run", str(scenarios / "quiet.yaml"), "--port", f"gw-b1={port}", "--port", f"gw-b2={free_port()}"]
        assert main([*argv, "--duration", "1", "--exit-after", "1", "--speed", "50"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
