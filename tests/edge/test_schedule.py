"""The per-detector poll schedule, on a virtual clock: each detector read at its own period, rounds shared."""

from pathlib import Path

from edge.config import EdgeConfig, ModbusConfig, MqttConfig, SensorConfig
from edge.schedule import PollSchedule

GAS = SensorConfig(id="gas-1", kind="gas", unit_id=1)
SMOKE = SensorConfig(id="smoke-1", kind="smoke", unit_id=2)
METER = SensorConfig(id="meter-1", kind="water-meter", unit_id=3, poll_interval_s=5.0)


def config(*sensors: SensorConfig, poll: float = 0.5) -> EdgeConfig:
    return EdgeConfig(
        community="hongxing",
        gateway="gw-1",
        outbox=Path("o.sqlite3"),
        mqtt=MqttConfig(),
        modbus=ModbusConfig(),
        sensors=sensors,
        poll_interval_s=poll,
    )


def run(schedule: PollSchedule, seconds: float, round_s: float = 0.01) -> tuple[dict[str, int], int]:
    """Drive the schedule as the agent does for ``seconds`` of virtual time; reads per sensor and rounds."""
    reads = {s.id: 0 for s in schedule.sensors}
    rounds = 0
    now = 0.0
    while now < seconds:
        due = schedule.due(now)
        if due:
            rounds += 1
            now += round_s
            schedule.done(due, now)
            for sensor in due:
                reads[sensor.id] += 1
        now = max(now, schedule.next_due())
    return reads, rounds


def test_each_detector_at_its_own_period_in_shared_rounds() -> None:
    schedule = PollSchedule(config(GAS, SMOKE, METER), now=0.0)
    reads, rounds = run(schedule, 600.0)  # +1: the read at 0 s and one early read (slack) near the end
    assert reads == {"gas-1": 1201, "smoke-1": 1201, "meter-1": 121}
    assert rounds == 1201  # the meter joins the gas/smoke rounds instead of adding its own
    assert schedule.reads_per_second() == 2.0 + 2.0 + 0.2


def test_a_late_round_is_not_followed_by_a_burst() -> None:
    schedule = PollSchedule(config(GAS), now=0.0)
    assert schedule.due(0.0) == [GAS]
    schedule.done([GAS], 3.0)  # the bus took 3 s (six periods)
    assert schedule.next_due() <= 3.0
    assert schedule.due(3.0) == [GAS]
    schedule.done([GAS], 3.01)
    assert schedule.due(3.02) == []  # one read, not six catching up
    assert 3.4 < schedule.next_due() <= 3.51


def test_gateway_period_applies_where_a_detector_has_none() -> None:
    schedule = PollSchedule(config(GAS, METER, poll=2.0), now=0.0)
    reads, _ = run(schedule, 200.0)
    assert reads == {"gas-1": 101, "meter-1": 41}
