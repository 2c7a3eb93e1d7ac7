"""The edge reads RS-485 detectors over Modbus RTU: the real simulator serving RTU on one end of a
pseudo-terminal null modem, the edge's own driver on the other; every sample taken once, as produced."""

import asyncio
import json
from pathlib import Path

import pytest

from edge.config import ConfigError, ModbusConfig, SensorConfig, parse_config
from edge.drivers.modbus import ModbusDriver
from firmware_sim.runner import RunOptions, run_simulation
from firmware_sim.scenario import parse_scenario
from firmware_sim.serial_link import NullModem

SCENARIO = """\
community: hongxing
seed: 4
duration_s: 6
gateways:
  gw-b1:
    - {sensor: gas-1, kind: gas, unit_id: 1}
    - {sensor: smoke-1, kind: smoke, unit_id: 2}
"""
SENSORS = (SensorConfig(id="gas-1", kind="gas", unit_id=1), SensorConfig(id="smoke-1", kind="smoke", unit_id=2))


def test_edge_driver_reads_rtu_detectors_exactly_once(tmp_path: Path) -> None:
    truth = tmp_path / "truth.jsonl"

    async def read() -> list[tuple[str, int, float]]:
        taken: list[tuple[str, int, float]] = []
        with NullModem() as cable:
            options = RunOptions(ports={}, serial={"gw-b1": cable.a}, speed=4.0, truth_path=truth)
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_simulation(parse_scenario(SCENARIO), options, stop=stop), name="sim")
                config = ModbusConfig(serial=cable.b, baudrate=9600, timeout_s=0.5)
                async with ModbusDriver(config=config, sensors=SENSORS) as driver:
                    cursors = {}
                    for _ in range(12):  # 3 s of polling; sampling ends after 1.5 s (6 simulated seconds)
                        for take in await driver.poll(cursors):
                            cursors[take.sensor.id] = take.cursor
                            taken.extend((take.sensor.id, r.time_ms, r.value) for r in take.readings)
                        await asyncio.sleep(0.25)
                stop.set()
        return taken

    taken = asyncio.run(asyncio.wait_for(read(), 30))
    records = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines()]
    produced = [(r["sensor"], r["time_ms"], r["value"]) for r in records if r["type"] == "reading"]
    assert sorted(taken) == sorted(produced) and len(produced) == 12


def config(modbus: dict[str, object], tmp_path: Path) -> ModbusConfig:
    data = {
        "community": "hongxing",
        "gateway": "gw-b1",
        "outbox": "o.sqlite3",
        "modbus": modbus,
        "sensors": [{"id": "g", "kind": "gas", "unit_id": 1}],
    }
    return parse_config(data, base_dir=tmp_path).modbus


def test_serial_settings_are_validated(tmp_path: Path) -> None:
    ok = config({"serial": "/dev/ttyUSB0", "baudrate": 19200}, tmp_path)
    assert (ok.serial, ok.baudrate) == ("/dev/ttyUSB0", 19200)
    with pytest.raises(ConfigError, match=r"modbus\.baudrate = 9601"):
        config({"baudrate": 9601}, tmp_path)
    with pytest.raises(ConfigError, match=r"modbus\.serial = 'COM3'"):
        config({"serial": "COM3"}, tmp_path)
