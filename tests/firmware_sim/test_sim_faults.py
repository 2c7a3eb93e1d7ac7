"""Faults on the detectors: each does what a field engineer would see, deterministically, and is in the truth."""

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ExceptionResponse

from firmware_sim.runner import RunOptions, Simulation, run_simulation
from firmware_sim.scenario import ScenarioError, parse_scenario
from protocol.registers import FAULT_LOW_BATTERY, FAULT_TAMPER, RING_ADDRESS, RING_COUNT, Status

START_MS = 1_764_400_000_000

BASE = """\
community: hongxing
seed: 9
duration_s: 120
gateways:
  gw-1:
    - {sensor: gas-1, kind: gas, unit_id: 1}
    - {sensor: smoke-1, kind: smoke, unit_id: 2}
    - {sensor: meter-1, kind: water-meter, unit_id: 3}
    - {sensor: co-1, kind: co, unit_id: 4}
"""


def run(faults: str, *, incidents: str = "") -> tuple[Simulation, list]:  # type: ignore[type-arg]
    scenario = parse_scenario(BASE + incidents + "faults:\n" + faults)
    sim = Simulation(scenario, start_ms=START_MS)
    return sim, [sim.tick() for _ in range(sim.sample_count)]


def values(ticks: list, sensor: str) -> dict[float, float]:  # type: ignore[type-arg]
    return {t.t_s: s.sample.value for t in ticks for s in t.samples if s.device.sensor_id == sensor}


def test_stuck_freezes_the_reading_for_its_window_only() -> None:
    _, ticks = run("  - {sensor: gas-1, type: stuck, start_s: 30, duration_s: 40}\n")
    gas = values(ticks, "gas-1")
    assert len({gas[t] for t in range(30, 70)}) == 1
    assert len({gas[t] for t in range(70, 110)}) > 3, "noise resumes after the fault"


def test_drift_walks_away_at_its_rate() -> None:
    _, clean = run("  - {sensor: co-1, type: stuck, start_s: 200}\n")  # a fault elsewhere in time: same noise
    _, drifting = run("  - {sensor: co-1, type: drift, start_s: 0, rate_per_h: 1800}\n")
    before, after = values(clean, "co-1"), values(drifting, "co-1")
    assert after[100] - before[100] == pytest.approx(50.0, abs=1.0)  # 0.5 ppm per second for 100 s


def test_spikes_jump_by_their_size() -> None:
    _, ticks = run("  - {sensor: smoke-1, type: spikes, start_s: 10, duration_s: 5, size: 1.0, probability: 1.0}\n")
    smoke = values(ticks, "smoke-1")
    assert all(smoke[t] > 0.9 for t in range(10, 15)) and all(smoke[t] < 0.1 for t in (5, 20))


def test_dropout_silences_the_device_and_leaves_a_gap() -> None:
    _, ticks = run("  - {sensor: gas-1, type: dropout, start_s: 20, duration_s: 10}\n")
    gas = values(ticks, "gas-1")
    assert not any(20 <= t < 30 for t in gas) and 19 in gas and 30 in gas
    assert ticks[25].muted == frozenset({("gw-1", 1)}) and ticks[30].muted == frozenset()
    seqs = [s.sample.seq for t in ticks for s in t.samples if s.device.sensor_id == "gas-1"]
    assert seqs == list(range(1, len(seqs) + 1)), "a hung device produces nothing, so its counter has no gap"


def test_low_battery_and_tamper_show_in_the_header() -> None:
    faults = (
        "  - {sensor: smoke-1, type: low-battery, start_s: 10, battery_pct: 6}\n"
        "  - {sensor: smoke-1, type: tamper, start_s: 50, duration_s: 10}\n"
    )
    _, ticks = run(faults)
    header = {t.t_s: s.header for t in ticks for s in t.samples if s.device.sensor_id == "smoke-1"}
    assert header[5].faults == 0 and header[5].status == Status.NORMAL and header[5].battery_pct >= 80
    assert header[20].faults == FAULT_LOW_BATTERY and header[20].battery_pct == 6 and header[20].status == Status.FAULT
    assert header[55].faults == FAULT_LOW_BATTERY | FAULT_TAMPER


def test_clock_skew_shifts_the_device_time() -> None:
    _, ticks = run("  - {sensor: gas-1, type: clock-skew, start_s: 0, skew_s: -90}\n")
    times = {s.device.sensor_id: s.sample.time_ms for s in ticks[3].samples}
    assert times["smoke-1"] - times["gas-1"] == 90_000


def test_a_suppressed_meter_stops_counting() -> None:
    incident = (
        "incidents:\n  - {name: no-water, sensors: [meter-1], start_s: 0, ramp: {to: 0, over_s: 0},"
        " hold_s: 120, grade: 3, effect: suppress}\n"
    )
    _, ticks = run("  - {sensor: gas-1, type: stuck, start_s: 500}\n", incidents=incident)
    meter = values(ticks, "meter-1")
    assert len(set(meter.values())) == 1


def test_fault_windows_are_in_the_truth() -> None:
    sim, ticks = run("  - {sensor: gas-1, type: dropout, start_s: 20, duration_s: 10}\n")
    records = [r for t in ticks for r in sim.truth_records(t) if r["type"] == "fault"]
    assert records == [
        {
            "type": "fault",
            "name": "dropout-gas-1-20",
            "sensor": "gas-1",
            "fault": "dropout",
            "start_ms": START_MS + 20_000,
            "end_ms": START_MS + 30_000,
        }
    ]


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ("  - {sensor: gas-1, type: melted, start_s: 1}\n", "one of stuck"),
        ("  - {sensor: gas-1, type: drift, start_s: 1}\n", "faults[0].rate_per_h: required key is missing"),
        ("  - {sensor: gas-9, type: stuck, start_s: 1}\n", "no such sensor"),
        ("  - {sensor: gas-1, type: stuck, start_s: 1, size: 2}\n", "unknown key"),
        ("  - {sensor: gas-1, type: spikes, start_s: 1, size: 1, probability: 2}\n", "must be in 0.0..1.0"),
    ],
)
def test_bad_faults_are_named_with_their_line(faults: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(BASE + "faults:\n" + faults)
    assert message in str(caught.value) and caught.value.line == 11


def test_suppress_is_for_meters_only() -> None:
    incident = (
        "incidents:\n  - {name: x, sensors: [gas-1], start_s: 0, ramp: {to: 0, over_s: 0}, grade: 3,"
        " effect: suppress}\n"
    )
    with pytest.raises(ScenarioError, match="cumulative meters"):
        parse_scenario(BASE + incident)


def test_a_device_in_dropout_does_not_answer_on_the_bus(free_port: Callable[[], int]) -> None:
    scenario = parse_scenario(BASE + "faults:\n  - {sensor: gas-1, type: dropout, start_s: 2, duration_s: 100}\n")

    async def read() -> tuple[object, object]:
        port = free_port()
        options = RunOptions(ports={"gw-1": port}, speed=20.0, start_ms=START_MS, duration_s=60.0)
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_simulation(scenario, options, stop=stop), name="sim")
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
            with contextlib.closing(client):
                for _ in range(50):
                    if await client.connect():
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # 10 simulated seconds: the dropout began at 2 s
                silent = await client.read_input_registers(RING_ADDRESS, count=RING_COUNT, device_id=1)
                other = await client.read_input_registers(RING_ADDRESS, count=RING_COUNT, device_id=2)
            stop.set()
        return silent, other

    silent, other = asyncio.run(asyncio.wait_for(read(), 10))
    assert isinstance(silent, ExceptionResponse) and silent.exception_code == 0x0B
    assert not isinstance(other, ExceptionResponse)
