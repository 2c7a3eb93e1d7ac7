"""Detectors' own reports reach the hub: the driver reads each detector's header (status, battery, fault flags),
spreads those reads over the rounds, and the agent's health report carries the detectors worth a look.

Real parts only, loopback only, every wait bounded: the firmware simulator's Modbus TCP server running a scenario
with ``low-battery`` and ``tamper`` faults, the in-process ``sim`` detectors for a full 247-unit bus, real
Mosquitto and the edge as a process. Where a test needs a request to fail at a given moment, a thin wrapper
around the driver's real transport mutes or stops the real server just before that request.
"""

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.config import ConfigError, ModbusConfig, SensorConfig, parse_config
from edge.drivers import bus, modbus
from edge.drivers.modbus import HEADER_READS_PER_ROUND, LOW_BATTERY_REPORT_PCT, ModbusDriver
from edge.drivers.transport import Transport
from edge.outbox import Cursor
from firmware_sim.devices import Detector as SimulatedDetector
from firmware_sim.runner import RunOptions, run_simulation
from firmware_sim.scenario import parse_scenario
from protocol.kinds import KINDS
from protocol.registers import (
    FAULT_LOW_BATTERY,
    FAULT_TAMPER,
    HEADER_ADDRESS,
    KIND_CODES,
    KIND_EXPONENTS,
    RING_CAPACITY,
    Header,
    Status,
)
from protocol.rejection import Rejection
from protocol.telemetry import DeviceStatus, HealthReport, decode_health
from tests.edge.support import COMMUNITY, GATEWAY, Broker, Detectors, EdgeProcess, free_port, write_config
from tests.edge.test_modbus_tcp import Gateway

SEED = 5
SPEED = 4.0
"""Simulated seconds per wall second: the tamper fault of 4 simulated seconds is over after one wall second."""
SCENARIO = f"""\
community: hongxing
seed: {SEED}
duration_s: 120
gateways:
  gw-b1:
    - {{sensor: smoke-b1-f3, kind: smoke, unit_id: 1}}
    - {{sensor: gas-b1-301, kind: gas, unit_id: 2}}
    - {{sensor: temp-b1-101, kind: temperature, unit_id: 3}}
faults:
  - {{sensor: smoke-b1-f3, type: low-battery, start_s: 0, battery_pct: 7}}
  - {{sensor: gas-b1-301, type: tamper, start_s: 0, duration_s: 4}}
"""
SENSORS = (
    SensorConfig("smoke-b1-f3", "smoke", 1),
    SensorConfig("gas-b1-301", "gas", 2),
    SensorConfig("temp-b1-101", "temperature", 3),
)
LOW_BATTERY = DeviceStatus("smoke-b1-f3", Status.FAULT, 7, FAULT_LOW_BATTERY, 0)


def _battery(sensor: str, kind: str) -> int:
    """The battery the simulator gives a healthy detector of this scenario (seeded: the same in every run)."""
    return SimulatedDetector(sensor_id=sensor, kind=KINDS[kind], scenario_seed=SEED).battery_pct


TAMPERED = DeviceStatus("gas-b1-301", Status.FAULT, _battery("gas-b1-301", "gas"), FAULT_TAMPER, 0)
AGENT_SCENARIO = SCENARIO.replace("start_s: 0, duration_s: 4}", "start_s: 0}")
"""Both faults for the whole run: the edge process starts at its own pace."""


async def _poll_until(
    driver: ModbusDriver, condition: Callable[[], bool], timeout_s: float, what: str, cursors: dict[str, Cursor]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {driver.device_statuses()}")
        for take in await driver.poll(cursors):
            cursors[take.sensor.id] = take.cursor
        await asyncio.sleep(0.05)


def test_low_battery_and_tamper_from_the_simulator_are_reported_and_a_fault_that_ends_drops_out() -> None:
    assert TAMPERED.battery_pct > LOW_BATTERY_REPORT_PCT  # the tampered detector is reported for the tamper alone
    assert _battery("temp-b1-101", "temperature") > LOW_BATTERY_REPORT_PCT  # and the third one is healthy
    port = free_port()

    async def run() -> tuple[list[DeviceStatus], list[DeviceStatus], ModbusDriver]:
        stop = asyncio.Event()
        options = RunOptions(ports={"gw-b1": port}, speed=SPEED)
        async with asyncio.TaskGroup() as group:
            group.create_task(run_simulation(parse_scenario(SCENARIO), options, stop=stop), name="sim")
            try:
                await asyncio.sleep(0.3)  # the server is listening and tick 0 (faults on) is in the registers
                config = ModbusConfig(port=port, timeout_s=0.5, status_interval_s=0.3)
                async with ModbusDriver(config=config, sensors=SENSORS) as driver:
                    cursors: dict[str, Cursor] = {}
                    await _poll_until(
                        driver, lambda: driver.device_statuses() == [TAMPERED, LOW_BATTERY], 5, "both faults", cursors
                    )
                    both = driver.device_statuses()
                    await _poll_until(  # the tamper ends at 4 simulated seconds, 1 s of wall time
                        driver, lambda: driver.device_statuses() == [LOW_BATTERY], 5, "the tamper to end", cursors
                    )
                    after = driver.device_statuses()
            finally:
                stop.set()
        return both, after, driver

    both, after, driver = asyncio.run(asyncio.wait_for(run(), 30))
    assert both == [TAMPERED, LOW_BATTERY]  # sorted by sensor id, the healthy temperature detector left out
    assert after == [LOW_BATTERY]
    assert driver.header_requests >= 3 + 1 and driver.silent() == [] and not any(driver.bad_headers.values())


def _recording(monkeypatch: pytest.MonkeyPatch, before: Callable[[int, int], None] | None = None) -> list[int]:
    """Make the driver's real transport record the unit id of every header read (and call ``before(unit,
    address)`` ahead of each read); returns the record."""
    headers: list[int] = []

    class Recording:
        def __init__(self, inner: Transport) -> None:
            self._inner = inner

        def read_input_registers(self, unit_id: int, address: int, count: int) -> bytes:
            if before is not None:
                before(unit_id, address)
            if address == HEADER_ADDRESS:
                headers.append(unit_id)
            return self._inner.read_input_registers(unit_id, address, count)

        def close(self) -> None:
            self._inner.close()

    def open_recording(config: ModbusConfig, *rest: Any) -> Transport:
        return Recording(bus.open_transport(config, *rest))

    monkeypatch.setattr(modbus, "open_transport", open_recording)
    return headers


def test_header_reads_of_a_full_bus_are_spread_over_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """247 in-process detectors due all at once: each round reads at most HEADER_READS_PER_ROUND headers, at the
    rate of 247 per status_interval_s, never-read ones first and none twice before every one was read once."""
    sensors = tuple(SensorConfig(f"gas-{unit}", "gas", unit) for unit in range(1, 248))
    interval_s = 5.0
    rate = len(sensors) / interval_s
    headers = _recording(monkeypatch)

    async def run() -> tuple[list[int], list[int], float, ModbusDriver]:
        per_round: list[int] = []
        rings: list[int] = []
        config = ModbusConfig(driver="sim", sim_sample_hz=1.0, status_interval_s=interval_s)
        async with ModbusDriver(config=config, sensors=sensors) as driver:
            cursors: dict[str, Cursor] = {}
            began = time.monotonic()
            while time.monotonic() - began < 2.0 and len(per_round) < 200:
                header_requests, requests = driver.header_requests, driver.requests
                for take in await driver.poll(cursors):
                    cursors[take.sensor.id] = take.cursor
                per_round.append(driver.header_requests - header_requests)
                rings.append(driver.requests - requests)
                await asyncio.sleep(0.02)
            return per_round, rings, time.monotonic() - began, driver

    per_round, rings, elapsed_s, driver = asyncio.run(asyncio.wait_for(run(), 30))
    assert set(rings) == {247}, "every round reads every ring"
    assert per_round[0] == HEADER_READS_PER_ROUND, "the first round reads as many headers as the bound allows"
    assert max(per_round) <= HEADER_READS_PER_ROUND, per_round
    assert len(per_round) >= 5 and sum(per_round[1:]) > 0, per_round
    assert sum(per_round) <= HEADER_READS_PER_ROUND + rate * elapsed_s + 1, (sum(per_round), elapsed_s)
    assert len(headers) == sum(per_round) == driver.header_requests
    assert headers == list(range(1, len(headers) + 1)), "never-read headers first, in order, none read twice"
    assert driver.device_statuses() == [], "the sim detectors are healthy (battery 100 %, status normal)"


def _header(status: int = Status.NORMAL, battery_pct: int = 90, faults: int = 0) -> Header:
    return Header(KIND_CODES["gas"], status, battery_pct, -61, KIND_EXPONENTS["gas"], RING_CAPACITY, 0, faults)


def test_a_header_read_that_gets_no_answer_or_a_dead_bus_counts_like_a_ring_read(
    gateway: Callable[[tuple[int, ...]], Gateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    units = (1, 2, 3)
    gw = gateway(units)
    gw.run(gw.server.set_header(1, _header(Status.SHIELDED)))
    gw.run(gw.server.set_header(2, _header(faults=FAULT_TAMPER)))
    gw.run(gw.server.set_header(3, _header(status=9)))  # not a GB/T 45839 code: a broken header
    sensors = tuple(SensorConfig(f"gas-{u}", "gas", u) for u in units)
    trap: dict[str, int | None] = {"mute_header_of": None, "stop_at_header_of": None}

    def before(unit_id: int, address: int) -> None:
        if address != HEADER_ADDRESS:
            return
        if unit_id == trap["mute_header_of"]:
            trap["mute_header_of"] = None
            gw.server.mute({unit_id})  # its ring answered a moment ago; now the real server answers 0x0B
        if unit_id == trap["stop_at_header_of"]:
            trap["stop_at_header_of"] = None
            gw.stop()

    headers = _recording(monkeypatch, before)

    async def run() -> None:
        config = ModbusConfig(port=gw.port, timeout_s=0.5, status_interval_s=1.0)
        async with ModbusDriver(config=config, sensors=sensors) as driver:
            trap["mute_header_of"] = 2
            assert await driver.poll({}) == []
            assert headers == [1, 2, 3]
            assert driver.unanswered == {"gas-1": 0, "gas-2": 1, "gas-3": 0}
            assert driver.silent() == ["gas-2"] and driver.bad_headers == {"gas-1": 0, "gas-2": 0, "gas-3": 1}
            assert driver.device_statuses() == [DeviceStatus("gas-1", Status.SHIELDED, 90, 0, 0)]
            gw.server.mute(set())
            assert await driver.poll({}) == []  # gas-2 answers its ring again; its header is still due
            assert headers[3:] == [2] and driver.silent() == []
            assert driver.device_statuses() == [
                DeviceStatus("gas-1", Status.SHIELDED, 90, 0, 0),
                DeviceStatus("gas-2", Status.NORMAL, 90, FAULT_TAMPER, 0),
            ]
            await asyncio.sleep(1.1)  # every header due again
            trap["stop_at_header_of"] = 1  # the converter dies after the rings, at the first header read
            assert await driver.poll({}) == []
            assert sorted(driver.silent()) == ["gas-1", "gas-2", "gas-3"]
            assert driver.unanswered == {"gas-1": 1, "gas-2": 2, "gas-3": 1}
            assert len(driver.device_statuses()) == 2, "the last headers read are still what is known"
            assert headers[4:] == [1]  # the round's header reads ended at the first one
            assert await driver.poll({}) == []  # the bus stays down: counted, no crash
            assert driver.unanswered == {"gas-1": 2, "gas-2": 3, "gas-3": 2}  # the round ended at the first ring
            assert headers[4:] == [1]

    asyncio.run(asyncio.wait_for(run(), 15))


def test_garbage_samples_put_an_otherwise_healthy_detector_in_the_report(
    detectors: Callable[[dict[int, tuple[str, str]]], Detectors],
) -> None:
    server = detectors({1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")})
    server.produce(1, 3.0)
    server.produce(2, 21.0)
    sensors = (SensorConfig("gas-b1-101", "gas", 1), SensorConfig("temp-b1-102", "temperature", 2))

    async def run() -> tuple[list[DeviceStatus], list[DeviceStatus]]:
        async with ModbusDriver(config=ModbusConfig(port=server.port, timeout_s=0.5), sensors=sensors) as driver:
            cursors = {t.sensor.id: t.cursor for t in await driver.poll({})}
            clean = driver.device_statuses()
            server.produce_raw(1, -(2**31))
            server.produce_raw(1, 2**31 - 1)
            await driver.poll(cursors)
            return clean, driver.device_statuses()

    clean, dirty = asyncio.run(asyncio.wait_for(run(), 10))
    assert clean == []  # both headers read (status normal, battery 90 %): nothing worth a look
    assert dirty == [DeviceStatus("gas-b1-101", Status.NORMAL, 90, 0, 2)]


# -- the agent's health report on the broker --------------------------------------------------------------------


class SimulatorThread:
    """``run_simulation`` on its own event loop in a background thread, until ``stop``."""

    def __init__(self, scenario: str, port: int) -> None:
        self._scenario = parse_scenario(scenario)
        self._options = RunOptions(ports={"gw-b1": port}, speed=SPEED)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._main, name="firmware-sim", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(run_simulation(self._scenario, self._options, stop=self._stop))
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            self._loop.close()

    def __enter__(self) -> "SimulatorThread":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_the_agents_health_report_on_the_broker_carries_the_detectors_worth_a_look(
    tmp_path: Path, broker: Broker, edge_process: Callable[[Path], EdgeProcess]
) -> None:
    modbus_port = free_port()
    reports: list[HealthReport | Rejection] = []
    received = threading.Condition()

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with received:
            reports.append(decode_health(bytes(message.payload)))
            received.notify_all()

    listener = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"health-{free_port()}", protocol=MQTTProtocolVersion.MQTTv311
    )
    listener.on_message = on_message
    listener.connect(broker.host, broker.port)
    listener.subscribe(f"anju/v1/{COMMUNITY}/{GATEWAY}/health", qos=1)
    listener.loop_start()
    config = write_config(
        tmp_path,
        broker_port=broker.port,
        modbus_port=modbus_port,
        sensors={s.unit_id: (s.id, s.kind) for s in SENSORS},
        extra={"health_interval_s": 3600},  # only a change in the detectors' status sends a report this early
        modbus={"status_interval_s": 5},
    )
    edge = edge_process(config)
    try:
        with SimulatorThread(AGENT_SCENARIO, modbus_port) as simulator:
            time.sleep(0.3)
            edge.start()

            def reported(expected: list[DeviceStatus]) -> HealthReport:
                deadline = time.monotonic() + 20
                with received:
                    while True:
                        for report in reports:
                            if isinstance(report, HealthReport) and list(report.devices) == expected:
                                return report
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or simulator.error is not None:
                            raise AssertionError(f"no health with devices {expected}: {reports[-3:]}")
                        received.wait(remaining)

            report = reported([TAMPERED, LOW_BATTERY])
            assert report.silent == () and report.values["garbage_samples"] == 0.0
            assert not [r for r in reports if isinstance(r, Rejection)]
        assert simulator.error is None, simulator.error
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nedge log:\n{edge.text()[-6000:]}") from None
    finally:
        edge.kill()
        listener.loop_stop()
        listener.disconnect()
    assert not [line for line in edge.text().splitlines() if "Traceback" in line]


@pytest.mark.parametrize("bad", ["0", "4.9", "-5", "86401", "1e9", ".nan", ".inf", "'60'", "true", "null"])
def test_a_bad_status_interval_is_refused_naming_the_field(tmp_path: Path, bad: str) -> None:
    from ruamel.yaml import YAML

    value = YAML(typ="safe", pure=True).load(bad)
    data = {
        "community": "hongxing",
        "gateway": "gw-b1",
        "outbox": "o.sqlite3",
        "modbus": {"status_interval_s": value},
        "sensors": [{"id": "gas-1", "kind": "gas", "unit_id": 1}],
    }
    with pytest.raises(ConfigError) as refused:
        parse_config(data, base_dir=tmp_path)
    assert refused.value.key == "modbus.status_interval_s"
    assert "modbus.status_interval_s" in str(refused.value)
    if isinstance(value, float) and math.isfinite(value) and value > 0:
        assert "between 5 and 86400 seconds" in refused.value.reason


def test_status_interval_default_and_bounds(tmp_path: Path) -> None:
    def modbus(section: dict[str, object]) -> ModbusConfig:
        data = {
            "community": "hongxing",
            "gateway": "gw-b1",
            "outbox": "o.sqlite3",
            "modbus": section,
            "sensors": [{"id": "gas-1", "kind": "gas", "unit_id": 1}],
        }
        return parse_config(data, base_dir=tmp_path).modbus

    assert modbus({}).status_interval_s == 60.0
    assert modbus({"status_interval_s": 5}).status_interval_s == 5.0
    assert modbus({"status_interval_s": 86_400}).status_interval_s == 86_400.0
