"""A real pymodbus client reads a running simulator over loopback TCP and sees exactly the truth."""

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from firmware_sim.runner import RunOptions, RunSummary, run_simulation
from firmware_sim.scenario import load_scenario, parse_scenario
from firmware_sim.truth import read_truth
from protocol.registers import (
    HEADER_ADDRESS,
    HEADER_COUNT,
    KIND_CODES,
    KIND_EXPONENTS,
    RING_ADDRESS,
    RING_CAPACITY,
    RING_COUNT,
    Sample,
    Status,
    decode_header,
    decode_ring,
    from_raw,
)
from tests.vectors import register_vectors

DURATION_S = 25.0  # > RING_CAPACITY samples, so the ring wraps
SPEED = 10.0
UNIT_GAS_301 = 3


async def _read(client: AsyncModbusTcpClient, unit: int) -> tuple[int, int, list[Sample]]:
    header_pdu = await client.read_input_registers(HEADER_ADDRESS, count=HEADER_COUNT, device_id=unit)
    ring_pdu = await client.read_input_registers(RING_ADDRESS, count=RING_COUNT, device_id=unit)
    assert not header_pdu.isError() and not ring_pdu.isError()
    header = decode_header(list(header_pdu.registers))
    assert header.kind_code == KIND_CODES["gas"]
    assert header.exponent == KIND_EXPONENTS["gas"]
    assert header.capacity == RING_CAPACITY
    return header.counter, header.status, decode_ring(list(ring_pdu.registers))


async def _scenario_run(
    scenarios: Path, tmp_path: Path, ports: dict[str, int]
) -> tuple[RunSummary, dict[int, Sample], set[int], list[ModbusPDU]]:
    scenario = load_scenario(scenarios / "kitchen_gas_leak.yaml")
    options = RunOptions(ports=ports, truth_path=tmp_path / "truth.jsonl", speed=SPEED, duration_s=DURATION_S)
    stop = asyncio.Event()
    seen: dict[int, Sample] = {}
    statuses: set[int] = set()
    refusals: list[ModbusPDU] = []
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(run_simulation(scenario, options, stop=stop), name="sim")
        client = AsyncModbusTcpClient("127.0.0.1", port=ports["gw-b1"], timeout=2, retries=0)
        try:
            for _ in range(50):  # wait for the server to listen (bounded)
                if await client.connect():
                    break
                await asyncio.sleep(0.05)
            assert client.connected
            counter = 0
            for _ in range(200):  # ~0.15 s between polls = 1.5 samples, far inside the 15-sample ring
                counter, status, samples = await _read(client, UNIT_GAS_301)
                statuses.add(status)
                for sample in samples:
                    assert seen.setdefault(sample.seq, sample) == sample  # an entry never changes
                if counter >= DURATION_S:
                    break
                await asyncio.sleep(0.15)
            assert counter == DURATION_S
            final_counter, _, final_ring = await _read(client, UNIT_GAS_301)
            assert final_counter == DURATION_S
            assert [s.seq for s in final_ring] == list(range(int(DURATION_S) - RING_CAPACITY + 1, int(DURATION_S) + 1))
            absent = await client.read_input_registers(0, count=8, device_id=42)
            write = await client.write_register(0, 1, device_id=UNIT_GAS_301)
            beyond = await client.read_input_registers(RING_ADDRESS + RING_COUNT, count=1, device_id=UNIT_GAS_301)
            refusals = [absent, write, beyond]
        finally:
            client.close()
            stop.set()
    return run.result(), seen, statuses, refusals


def test_client_reads_what_the_truth_file_says(scenarios: Path, tmp_path: Path, free_port: Callable[[], int]) -> None:
    ports = {"gw-b1": free_port(), "gw-b2": free_port()}
    summary, seen, statuses, refusals = asyncio.run(asyncio.wait_for(_scenario_run(scenarios, tmp_path, ports), 10))

    assert summary.completed and summary.ticks == DURATION_S and summary.alarms == ["gas-b1-301"]
    assert sorted(seen) == list(range(1, int(DURATION_S) + 1))  # polled fast enough: no gap at all
    assert Status.ALARM in statuses  # the leak passed 25 %LEL around t=21 s

    truth = [r for r in read_truth(tmp_path / "truth.jsonl") if r["type"] == "reading" and r["sensor"] == "gas-b1-301"]
    assert len(truth) == DURATION_S
    exponent = KIND_EXPONENTS["gas"]
    decoded = [(seen[seq].time_ms, from_raw(seen[seq].raw, exponent)) for seq in sorted(seen)]
    assert decoded == [(r["time_ms"], r["value"]) for r in truth]
    assert all(r["unit"] == "%LEL" and r["gateway"] == "gw-b1" for r in truth)
    times = [t for t, _ in decoded]
    assert times[0] == summary.start_ms and all(b - a == 1000 for a, b in itertools.pairwise(times))

    absent, write, beyond = refusals
    assert isinstance(absent, ExceptionResponse) and absent.exception_code == 0x0B  # gateway: no response
    assert isinstance(write, ExceptionResponse) and write.exception_code == 0x01  # illegal function
    assert isinstance(beyond, ExceptionResponse) and beyond.exception_code == 0x02  # illegal address


def test_second_gateway_serves_its_own_units(scenarios: Path, free_port: Callable[[], int]) -> None:
    async def scenario() -> list[int]:
        ports = {"gw-b1": free_port(), "gw-b2": free_port()}
        options = RunOptions(ports=ports, speed=20.0, duration_s=2.0, exit_after_s=6.0)
        kinds = []
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_simulation(load_scenario(scenarios / "quiet.yaml"), options), name="sim")
            await asyncio.sleep(0.1)
            client = AsyncModbusTcpClient("127.0.0.1", port=ports["gw-b2"], timeout=2, retries=0)
            with contextlib.closing(client):
                assert await client.connect()
                for unit in range(1, 11):
                    pdu = await client.read_input_registers(HEADER_ADDRESS, count=HEADER_COUNT, device_id=unit)
                    kinds.append(decode_header(list(pdu.registers)).kind_code)
        return kinds  # the run ended by itself at exit_after_s

    assert asyncio.run(asyncio.wait_for(scenario(), 5)) == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]


GOLDEN_RUN_START_MS = 1_750_000_000_000
"""The golden ring entries timed ``start + (seq - 1) * 1000`` are samples of a run started here (README.md)."""


def _big_endian(value: int, words: int) -> list[int]:
    """The datasheet's rule for multi-word numbers, high word first (written out here, not imported)."""
    return [(value >> (16 * (words - 1 - i))) & 0xFFFF for i in range(words)]


def test_simulator_serves_the_golden_register_layout(free_port: Callable[[], int]) -> None:
    """One constant detector per kind at a golden entry's value, sampling on the golden run's clock: a real
    client reads each golden entry word for word at its address, every other ring entry by the same rules,
    and headers whose kind code, exponent, capacity, counter and reserved words are the golden ones."""
    vectors = register_vectors()
    kinds = vectors["kinds"]
    window = [e for e in vectors["entries"] if 0 <= e["fields"]["time_ms"] - GOLDEN_RUN_START_MS < 86_400_000]
    window_kinds = [e["kind"] for e in window]
    assert len(set(window_kinds)) == len(window_kinds) and set(window_kinds) <= set(kinds)  # one detector per kind
    samples = max(e["fields"]["seq"] for e in window)
    [datasheet] = [h for h in vectors["headers"] if h["name"].startswith("datasheet example")]
    assert datasheet["fields"]["counter"] == samples
    assert all(
        e["fields"]["time_ms"] == GOLDEN_RUN_START_MS + (e["fields"]["seq"] - 1) * 1000
        and e["fields"]["seq"] > samples - RING_CAPACITY  # still in the ring at the end of the run
        for e in window
    )
    devices = "\n".join(
        f"    - {{sensor: {e['reading'][0]}, kind: {e['kind']}, unit_id: {unit}, "
        f"baseline: {e['reading'][2]}, noise_sd: 0, rhythm: false}}"
        for unit, e in enumerate(window, start=1)
    )
    scenario = parse_scenario(f"community: hongxing\nseed: 7\nduration_s: {samples}\ngateways:\n  gw-v:\n{devices}\n")
    port = free_port()
    options = RunOptions(ports={"gw-v": port}, speed=200.0, start_ms=GOLDEN_RUN_START_MS)

    async def read_all() -> list[tuple[list[int], list[int]]]:
        stop = asyncio.Event()
        images = []
        async with asyncio.TaskGroup() as tg:
            tg.create_task(run_simulation(scenario, options, stop=stop), name="sim")
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
            try:
                for _ in range(50):  # wait for the server to listen (bounded)
                    if await client.connect():
                        break
                    await asyncio.sleep(0.05)
                assert client.connected
                for unit in range(1, len(window) + 1):
                    for _ in range(100):  # the run takes ~0.1 s; wait for its last sample (bounded)
                        header = await client.read_input_registers(HEADER_ADDRESS, count=HEADER_COUNT, device_id=unit)
                        assert not header.isError()
                        if header.registers[6:8] == _big_endian(samples, 2):
                            break
                        await asyncio.sleep(0.02)
                    ring = await client.read_input_registers(RING_ADDRESS, count=RING_COUNT, device_id=unit)
                    assert not ring.isError()
                    images.append((list(header.registers), list(ring.registers)))
            finally:
                client.close()
                stop.set()
        return images

    images = asyncio.run(asyncio.wait_for(read_all(), 5))
    for entry, (header, ring) in zip(window, images, strict=True):
        kind = kinds[entry["kind"]]
        assert header[0] == kind["code"]
        assert header[4] == kind["exponent"] & 0xFFFF  # i16 two's complement
        assert header[5] == RING_CAPACITY
        assert header[6:8] == _big_endian(samples, 2)
        assert header[8:16] == [0] * 8
        assert 80 <= header[2] <= 100 and header[3] >= 0x8000  # battery %, a negative dBm
        if entry["kind"] == datasheet["kind"]:  # same kind, counter and status as the datasheet example
            assert header[:2] + header[4:] == datasheet["words"][:2] + datasheet["words"][4:]  # all but battery, dBm
        start = entry["address"] - RING_ADDRESS
        assert ring[start : start + 8] == entry["words"]
        for seq in range(samples - RING_CAPACITY + 1, samples + 1):
            start = (seq - 1) % RING_CAPACITY * 8
            time_ms = GOLDEN_RUN_START_MS + (seq - 1) * 1000
            assert ring[start : start + 8] == [*_big_endian(seq, 2), *_big_endian(time_ms, 4), *entry["words"][6:8]]
