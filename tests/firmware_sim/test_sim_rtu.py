"""Detectors as RS-485 wires them: Modbus RTU on a serial line (a pseudo-terminal null modem), real client."""

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.pdu import ExceptionResponse

from firmware_sim.runner import RunOptions, run_simulation
from firmware_sim.scenario import load_scenario
from firmware_sim.serial_link import NullModem
from protocol.registers import HEADER_ADDRESS, HEADER_COUNT, RING_ADDRESS, RING_COUNT, decode_header, decode_ring


def test_a_serial_client_reads_the_ring_over_rtu(scenarios: Path, tmp_path: Path, free_port: Callable[[], int]) -> None:
    scenario = load_scenario(scenarios / "kitchen_gas_leak.yaml")
    truth = tmp_path / "truth.jsonl"

    async def read() -> tuple[int, list[tuple[int, int]], object]:
        with NullModem() as cable:
            options = RunOptions(
                ports={"gw-b2": free_port()}, serial={"gw-b1": cable.a}, speed=10.0, duration_s=3.0, truth_path=truth
            )
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(run_simulation(scenario, options, stop=stop), name="sim")
                await asyncio.sleep(0.6)  # 6 simulated seconds: the 3 s of sampling are over
                client = AsyncModbusSerialClient(cable.b, framer=FramerType.RTU, baudrate=9600, timeout=2, retries=1)
                with contextlib.closing(client):
                    assert await client.connect()
                    header = await client.read_input_registers(HEADER_ADDRESS, count=HEADER_COUNT, device_id=3)
                    ring = await client.read_input_registers(RING_ADDRESS, count=RING_COUNT, device_id=3)
                    absent = await client.read_input_registers(HEADER_ADDRESS, count=1, device_id=42)
                stop.set()
        kind_code = decode_header(list(header.registers)).kind_code
        return kind_code, [(s.seq, s.time_ms) for s in decode_ring(list(ring.registers))], absent

    kind_code, samples, absent = asyncio.run(asyncio.wait_for(read(), 20))
    assert kind_code == 1  # gas-b1-301 is unit 3 of gw-b1
    records = [json.loads(line) for line in truth.read_text(encoding="utf-8").splitlines()]
    produced = [r["time_ms"] for r in records if r["type"] == "reading" and r["sensor"] == "gas-b1-301"]
    assert [time_ms for _, time_ms in samples] == produced and [seq for seq, _ in samples] == [1, 2, 3]
    assert isinstance(absent, ExceptionResponse) and absent.exception_code == 0x0B
