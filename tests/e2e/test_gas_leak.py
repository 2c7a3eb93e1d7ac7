"""The whole chain with real processes: simulator → edge agents → Mosquitto → hub → alerts → webhook sink.

The demo's own layout (``hub.demo.orchestrator.prepare``) is used, so this is ``make demo`` with assertions:
the gas leak arrives graded at the grid manager's receiver, and the hub's store holds exactly the readings of
the simulator's truth file — none lost, none twice — including when the hub is SIGKILLed in the middle.
"""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.demo.orchestrator import prepare
from tests.e2e.system import (
    System,
    alarms_not_stored,
    alarms_produced,
    assert_alarms_first_after,
    assert_exactly_once,
    notifications,
    running,
    sampled_s,
    stored_count,
    wait_for,
    wait_until_everything_is_stored,
)

pytestmark = pytest.mark.e2e

SPEED = 4.0
DURATION_S = 44.0  # simulated seconds: the leak passes 25 %LEL at ~21 s and 50 %LEL at ~38 s


@pytest.fixture
def system(mosquitto: int, tmp_path: Path) -> Iterator[System]:
    plan = prepare(tmp_path / "run", mqtt_port=mosquitto)
    with running(System(plan, hub_mqtt_port=mosquitto, speed=SPEED, duration_s=DURATION_S)) as started:
        yield started


def test_gas_leak_reaches_the_grid_manager_graded_and_every_reading_is_stored_once(system: System) -> None:
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
    truth = wait_until_everything_is_stored(system)
    assert_exactly_once(system, truth)
    assert any("LOCAL ALARM gas-b1-301" in line for line in system.log)


def test_no_reading_is_lost_or_doubled_when_the_hub_is_killed_mid_run(system: System) -> None:
    # Killed at simulated ~15 s and back once the leak's first alarm readings (from ~21 s) are taken: meanwhile the
    # gateways buffer routine readings (the hub's Will says offline) and publish the alarms to its broker queue.
    plan = system.plan
    edge = "edge-gw-b1"
    wait_for(lambda: stored_count(plan) >= 200 and sampled_s(system) >= 15, system, "200 readings stored", 60)
    assert not alarms_produced(plan), f"the hub dies before the leak's alarm readings ({sampled_s(system)} s)"
    offline_before = len(system.lines_of(edge, "hub is offline"))
    assert system.children.pop("hub").kill() == -signal.SIGKILL  # popped: wait_for fails on a child not alive
    wait_for(lambda: len(system.lines_of(edge, "hub is offline")) > offline_before, system, "the hub's Will", 30)
    wait_for(lambda: len(alarms_produced(plan)) >= 4, system, "the leak's first alarm readings", 30)
    buffered = alarms_not_stored(plan)
    system.start_hub()
    truth = wait_until_everything_is_stored(system)
    assert_alarms_first_after(system, "gw-b1", offline_before, buffered, mark="hub is offline")
    assert_exactly_once(system, truth)
