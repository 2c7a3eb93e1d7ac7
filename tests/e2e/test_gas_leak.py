"""The whole chain with real processes: simulator → edge agents → Mosquitto → hub → alerts → webhook sink.

The demo's own layout (``hub.demo.orchestrator.prepare``) is used, so this is ``make demo`` with assertions:
the gas leak arrives graded at the grid manager's receiver, and the hub's store holds exactly the readings of
the simulator's truth file — none lost, none twice — including when the hub is SIGKILLed in the middle.
"""

import json
import queue
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.demo.orchestrator import SCENARIO, DemoPlan, prepare
from hub.demo.processes import Child, Line, wait_port

pytestmark = pytest.mark.e2e

SPEED = 4.0
DURATION_S = 44.0  # simulated seconds: the leak passes 25 %LEL at ~21 s and 50 %LEL at ~38 s


class System:
    def __init__(self, plan: DemoPlan) -> None:
        self.plan = plan
        self.lines: queue.Queue[Line] = queue.Queue()
        self.log: list[str] = []
        self.children: dict[str, Child] = {}

    def start(self, name: str, *args: str, port: int | None = None) -> Child:
        child = Child(name, [sys.executable, "-m", *args], self.lines, cwd=self.plan.run_dir).start()
        self.children[name] = child
        if port is not None:
            assert wait_port(port, timeout_s=30), f"{name} did not listen on {port}:\n{self.tail()}"
        return child

    def start_hub(self) -> None:
        plan = self.plan
        self.start(
            "hub", "hub", "serve", "--config", str(plan.deployment), "--data-dir", str(plan.run_dir / "hub"),
            "--mqtt-port", str(plan.mqtt_port), "--http-port", str(plan.http_port),
            "--api-token-file", str(plan.token_file), port=plan.http_port,
        )  # fmt: skip

    def drain(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            self.log.append(f"{line.source}: {line.text}")

    def tail(self, count: int = 60) -> str:
        self.drain()
        return "\n".join(self.log[-count:])

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        self.drain()


@pytest.fixture
def system(mosquitto: int, tmp_path: Path) -> Iterator[System]:
    plan = prepare(tmp_path / "run", mqtt_port=mosquitto)
    running = System(plan)
    try:
        running.start("sink", "alerts.sink", "--port", str(plan.sink_port), "--secret-file", str(plan.secret_file),
                      "--log", str(plan.notifications), port=plan.sink_port)  # fmt: skip
        running.start_hub()
        ports = [arg for gateway, port in plan.modbus_ports.items() for arg in ("--port", f"{gateway}={port}")]
        sim_args = ["--truth", str(plan.truth), "--speed", str(SPEED), "--duration", str(DURATION_S)]
        running.start("sim", "firmware_sim", "run", str(SCENARIO), *ports, *sim_args, port=plan.modbus_ports["gw-b1"])
        for gateway in plan.modbus_ports:
            running.start(f"edge-{gateway}", "edge", "run", "--config", str(plan.run_dir / f"{gateway}.toml"))
        yield running
    finally:
        running.stop()


def truth_readings(path: Path) -> set[tuple[str, int, float]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {(r["sensor"], r["time_ms"], r["value"]) for r in rows if r["type"] == "reading"}


def stored_readings(plan: DemoPlan) -> list[tuple[str, int, float]]:
    with sqlite3.connect(plan.run_dir / "hub" / "readings.sqlite3") as db:
        return [tuple(row) for row in db.execute("SELECT sensor, time_ms, value FROM readings")]


def notifications(plan: DemoPlan) -> list[dict[str, object]]:
    if not plan.notifications.exists():
        return []
    return [json.loads(line) for line in plan.notifications.read_text(encoding="utf-8").splitlines()]


def stored_count(plan: DemoPlan) -> int:
    """Rows in the hub's store (not the process counter, which starts again at 0 when the hub restarts)."""
    path = plan.run_dir / "hub" / "readings.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
        (count,) = db.execute("SELECT count(*) FROM readings").fetchone()
    return int(count)


def wait_for(condition, system: System, what: str, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        dead = [name for name, child in system.children.items() if not child.alive]
        assert not dead, f"{dead} exited while waiting for {what}:\n{system.tail()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{system.tail()}"
        time.sleep(0.2)
        system.drain()


def wait_until_everything_is_stored(system: System, started: float) -> set[tuple[str, int, float]]:
    plan = system.plan
    remaining = started + DURATION_S / SPEED + 1.0 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)  # the simulator samples for DURATION_S simulated seconds, then only serves
    truth = truth_readings(plan.truth)
    assert len(truth) == 20 * int(DURATION_S), "one reading per detector per simulated second"
    wait_for(lambda: stored_count(plan) == len(truth), system, f"{len(truth)} readings stored", 60)
    return truth


def assert_exactly_once(system: System, truth: set[tuple[str, int, float]]) -> None:
    system.stop()
    stored = stored_readings(system.plan)
    assert len(stored) == len(set(stored)), "a reading was stored twice"
    missing, extra = truth - set(stored), set(stored) - truth
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"


def test_gas_leak_reaches_the_grid_manager_graded_and_every_reading_is_stored_once(system: System) -> None:
    started = time.monotonic()
    plan = system.plan

    def graded(grade: str) -> bool:
        return any(
            n["grade"]["roman"] == grade and n["sensor"] == "gas-b1-301"  # type: ignore[index]
            for n in notifications(plan)
        )

    wait_for(lambda: graded("III"), system, "the grade III notification", 60)
    wait_for(lambda: graded("II"), system, "the grade II notification", 60)
    first = notifications(plan)[0]
    assert first["recipient"] == {"id": "wang-li", "name": "王丽（网格员）"}
    assert not any(n["sensor"] != "gas-b1-301" for n in notifications(plan)), "no false alarm elsewhere"
    truth = wait_until_everything_is_stored(system, started)
    assert_exactly_once(system, truth)
    assert any("LOCAL ALARM gas-b1-301" in line for line in system.log)


def test_no_reading_is_lost_or_doubled_when_the_hub_is_killed_mid_run(system: System) -> None:
    started = time.monotonic()
    plan = system.plan
    wait_for(lambda: stored_count(plan) >= 200, system, "200 readings stored", 60)
    assert system.children["hub"].kill() == -signal.SIGKILL
    time.sleep(2.0)  # the gateways keep reading and buffering while the hub is gone
    system.start_hub()
    truth = wait_until_everything_is_stored(system, started)
    assert_exactly_once(system, truth)
