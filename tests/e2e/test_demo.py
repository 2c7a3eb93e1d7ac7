"""``make demo`` as a user runs it: the alert is delivered, Ctrl-C stops everything, nothing is left running."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_demo_delivers_the_gas_alert_and_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo-run"
    demo = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--run-dir", str(run_dir), "--broker", "embedded"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 90
        for line in demo.stdout:
            seen.append(line)
            if "告警已送达 alert delivered" in line:
                break
            assert time.monotonic() < deadline, "".join(seen[-40:])
        else:
            pytest.fail("demo ended before delivering the alert:\n" + "".join(seen[-40:]))
        assert any("API: http://127.0.0.1:" in line for line in seen)
        assert any("embedded trial broker" in line for line in seen)
        assert processes_mentioning(str(run_dir)), "the demo's children should be running now"
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 0, rest[-3000:]
    assert "all processes stopped" in rest
    assert processes_mentioning(str(run_dir)) == []
    assert (run_dir / "notifications.jsonl").read_text(encoding="utf-8").count("gas-b1-301") >= 2


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_demo_stops_every_child_on_sigterm_and_a_closed_terminal(tmp_path: Path, signum: int) -> None:
    run_dir = tmp_path / "demo-run"
    demo = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 60
        seen = []
        for line in demo.stdout:
            seen.append(line)
            if "connected to broker" in line and sum("connected to broker" in s for s in seen) >= 3:
                break  # the hub and both gateways are up
            assert time.monotonic() < deadline, "".join(seen[-40:])
        assert processes_mentioning(str(run_dir))
        demo.send_signal(signum)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 0, rest[-3000:]
    assert f"{signal.Signals(signum).name}: 正在停止 stopping" in rest
    assert processes_mentioning(str(run_dir)) == []
