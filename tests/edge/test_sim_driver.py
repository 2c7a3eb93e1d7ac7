"""The in-process ``sim`` driver: real register map, every sample taken once by the ring reader, quiet values."""

import asyncio

import pytest

from edge.config import ModbusConfig, SensorConfig
from edge.drivers.modbus import ModbusDriver
from edge.drivers.sim import SimTransport, quiet_value
from edge.drivers.transport import NoAnswer
from edge.outbox import Cursor
from protocol.kinds import KINDS
from protocol.registers import HEADER_COUNT, KIND_CODES, RING_ADDRESS, RING_COUNT, decode_header, decode_ring_bytes

SENSORS = tuple(SensorConfig(id=f"{kind}-1", kind=kind, unit_id=i + 1) for i, kind in enumerate(sorted(KINDS)))


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_header_and_ring_follow_the_register_map() -> None:
    clock = Clock(1_800_000_000.0)
    transport = SimTransport(sensors=SENSORS, sample_hz=2.0, clock=clock)
    clock.now += 10.0  # 20 samples: the ring of 15 has wrapped
    for sensor in SENSORS:
        header = decode_header(list(_words(transport.read_input_registers(sensor.unit_id, 0, HEADER_COUNT))))
        assert header.kind_code == KIND_CODES[sensor.kind] and header.counter == 20
        samples = decode_ring_bytes(transport.read_input_registers(sensor.unit_id, RING_ADDRESS, RING_COUNT))
        assert [s.seq for s in samples] == list(range(6, 21))
        assert [s.time_ms for s in samples] == [1_800_000_000_000 + 500 * s for s in range(6, 21)]
    with pytest.raises(NoAnswer, match="0x0b"):
        transport.read_input_registers(200, RING_ADDRESS, RING_COUNT)
    with pytest.raises(NoAnswer, match="0x02"):
        transport.read_input_registers(1, 130, 10)


def test_quiet_values_stay_clear_of_every_set_point() -> None:
    for kind, spec in KINDS.items():
        for seq in range(1, 200):
            value = quiet_value(kind, seq)
            assert spec.minimum <= value <= spec.maximum, (kind, value)
            assert not any(point.crossed(value) for point in spec.set_points), (kind, seq, value)


def test_ring_reader_takes_every_simulated_sample_once() -> None:
    async def run() -> tuple[list[tuple[str, int]], int]:
        config = ModbusConfig(driver="sim", sim_sample_hz=20.0)
        taken: list[tuple[str, int]] = []
        async with ModbusDriver(config=config, sensors=SENSORS[:3]) as driver:
            cursors: dict[str, Cursor] = {}
            for _ in range(8):
                for take in await driver.poll(cursors):
                    cursors[take.sensor.id] = take.cursor
                    taken.extend((take.sensor.id, r.time_ms) for r in take.readings)
                    assert take.missed == 0
                await asyncio.sleep(0.25)  # 5 samples per poll, well inside the ring of 15
            return taken, sum(c.seq for c in cursors.values())

    taken, last_seqs = asyncio.run(asyncio.wait_for(run(), 20))
    assert len(taken) == len(set(taken)) == last_seqs  # seq 1..n of each sensor, each once
    assert last_seqs >= 3 * 30


def _words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
