import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import ModbusConfig, SensorConfig
from edge.drivers.modbus import ModbusDriver, Take, select_new
from edge.outbox import Cursor, Entry, Outbox, Route
from protocol.kinds import KINDS
from protocol.registers import RING_ADDRESS, Sample
from tests.edge.support import Detectors
from tests.vectors import register_vectors

SENSORS = (SensorConfig("gas-b1-101", "gas", 1), SensorConfig("temp-b1-102", "temperature", 2))
UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}


def _poll_into(outbox_path: Path, port: int, sensors: tuple[SensorConfig, ...] = SENSORS) -> dict[str, int]:
    """One edge start: open the outbox (new session), poll once with a fresh driver, store; returns counters."""

    async def run() -> dict[str, int]:
        outbox = Outbox.open(outbox_path, community="hongxing", gateway="gw-b1", max_bytes=1 << 20)
        try:
            async with ModbusDriver(config=ModbusConfig(port=port, timeout_s=0.5), sensors=sensors) as driver:
                takes = await driver.poll(outbox.cursors())
                entries = [Entry(r) for t in takes for r in t.readings]
                outbox.add(entries, {t.sensor.id: t.cursor for t in takes})
                return {
                    "missed": sum(driver.missed.values()),
                    "restarts": sum(driver.restarts.values()),
                    **{f"unanswered:{k}": v for k, v in driver.unanswered.items()},
                }
        finally:
            outbox.close()

    return asyncio.run(run())


def _stored(outbox_path: Path) -> list[tuple[str, int, float]]:
    outbox = Outbox.open(outbox_path, community="hongxing", gateway="gw-b1", max_bytes=1 << 20, new_session=False)
    try:
        rows = []
        while (item := outbox.next_batch(Route.DATA, limit=1000)) is not None:
            rows += [(r.sensor, r.time_ms, r.value) for r in item.batch.readings]
        return rows
    finally:
        outbox.close()


def _expected(server: Detectors) -> list[tuple[str, int, float]]:
    return [(p.sensor, p.time_ms, p.value) for p in server.produced]


def test_each_sample_once_across_polls_and_restarts(
    tmp_path: Path, detectors: Callable[[dict[int, tuple[str, str]]], Detectors]
) -> None:
    server = detectors(UNITS)
    path = tmp_path / "outbox.sqlite3"
    for round_ in range(4):
        for i in range(round_ * 3 + 1):
            server.produce(1, 1.5 + i)
            server.produce(2, 21.3)
        counters = _poll_into(path, server.port)  # every round is a restarted edge: new driver, new session
        assert counters["missed"] == 0
        _poll_into(path, server.port)  # nothing new: nothing taken twice
    stored = _stored(path)
    assert sorted(stored) == sorted(_expected(server))
    values = {v for s, _, v in stored if s == "temp-b1-102"}
    assert values == {21.3}


def test_device_restart_and_gap(tmp_path: Path, detectors: Callable[[dict[int, tuple[str, str]]], Detectors]) -> None:
    server = detectors(UNITS)
    path = tmp_path / "outbox.sqlite3"
    for _ in range(5):
        server.produce(1, 2.0)
    _poll_into(path, server.port)
    server.power_cycle(1)
    for _ in range(3):
        server.produce(1, 3.0)
    assert _poll_into(path, server.port)["restarts"] == 1
    for _ in range(20):  # more than the ring holds between two polls: 5 samples fall out
        server.produce(1, 4.0)
    assert _poll_into(path, server.port)["missed"] == 5
    stored = _stored(path)
    assert len(stored) == 5 + 3 + 15
    assert set(stored) <= set(_expected(server))


def test_silent_device_does_not_stop_the_others(
    tmp_path: Path, detectors: Callable[[dict[int, tuple[str, str]]], Detectors]
) -> None:
    server = detectors(UNITS)
    server.produce(1, 5.0)
    sensors = (*SENSORS, SensorConfig("smoke-b1-103", "smoke", 9))
    counters = _poll_into(tmp_path / "o.sqlite3", server.port, sensors)
    assert counters["unanswered:smoke-b1-103"] == 1
    assert counters["unanswered:gas-b1-101"] == 0
    assert [s for s, _, _ in _stored(tmp_path / "o.sqlite3")] == ["gas-b1-101"]


def test_no_server_counts_every_sensor(tmp_path: Path) -> None:
    from tests.edge.support import free_port

    counters = _poll_into(tmp_path / "o.sqlite3", free_port())
    assert counters["unanswered:gas-b1-101"] == counters["unanswered:temp-b1-102"] == 1


def test_driver_reads_the_golden_ring_entries(
    detectors: Callable[[dict[int, tuple[str, str]]], Detectors], caplog: pytest.LogCaptureFixture
) -> None:
    """Each golden ring entry alone in one detector's ring, served word for word by a real pymodbus server."""
    entries = register_vectors()["entries"]
    units = {unit_id: (e["reading"][0], e["kind"]) for unit_id, e in enumerate(entries, start=1)}
    server = detectors(units)
    with server.lock:
        for unit_id, entry in enumerate(entries, start=1):
            image = server.units[unit_id][1]
            start = entry["address"] - RING_ADDRESS
            image.ring[start : start + 8] = entry["words"]  # the vector's words, not an encoding of them
            image.counter = entry["fields"]["seq"]
    sensors = tuple(SensorConfig(sensor, kind, unit_id) for unit_id, (sensor, kind) in units.items())

    async def poll_twice() -> tuple[list[Take], list[Take], ModbusDriver]:
        async with ModbusDriver(config=ModbusConfig(port=server.port, timeout_s=0.5), sensors=sensors) as driver:
            first = await driver.poll({})
            again = await driver.poll({t.sensor.id: t.cursor for t in first})
            return first, again, driver

    with caplog.at_level(logging.WARNING, logger="edge.drivers.modbus"):
        first, again, driver = asyncio.run(asyncio.wait_for(poll_twice(), 5))
    # Every entry is decoded word for word; those outside the kind's physical range (the vectors also test the
    # decoding of extreme raws) are garbage to the driver: counted and logged with the decoded value, not taken.
    plausible = [e for e in entries if KINDS[e["kind"]].minimum <= e["reading"][2] <= KINDS[e["kind"]].maximum]
    garbage = [e for e in entries if e not in plausible]
    assert plausible and garbage
    assert [list(r) for t in first for r in t.readings] == [e["reading"] for e in plausible]
    assert [t.cursor for t in first] == [Cursor(e["fields"]["seq"], e["fields"]["time_ms"]) for e in entries]
    assert again == []  # nothing new on the second poll
    assert {s: n for s, n in driver.garbage.items() if n} == {e["reading"][0]: 1 for e in garbage}
    for entry in garbage:
        assert f"garbage sample {entry['fields']['seq']}: value {entry['reading'][2]} " in caplog.text
    assert not any((*driver.missed.values(), *driver.invalid.values(), *driver.unanswered.values()))


def test_select_new_rules() -> None:
    ring = [Sample(s, 1_000 * s, s) for s in range(6, 21)]
    assert select_new(ring, None).samples == tuple(ring)  # first contact: all, nothing missed
    assert select_new(ring, None).missed == 0
    later = select_new(ring, Cursor(18, 18_000))
    assert [s.seq for s in later.samples] == [19, 20] and later.cursor == Cursor(20, 20_000)
    assert select_new(ring, Cursor(20, 20_000)).samples == ()
    gap = select_new(ring, Cursor(2, 2_000))
    assert (gap.missed, len(gap.samples)) == (3, 15)
    assert select_new(ring, Cursor(25, 25_000)).restarted  # counter went back
    same_seq_other_time = select_new(ring, Cursor(10, 999))
    assert same_seq_other_time.restarted and len(same_seq_other_time.samples) == 15
    empty = select_new([], Cursor(4, 4_000))
    assert empty.restarted and empty.cursor == Cursor(0, 0)


def test_garbage_registers_are_counted_not_taken(
    detectors: Callable[[dict[int, tuple[str, str]]], Detectors], caplog: pytest.LogCaptureFixture
) -> None:
    """Raw -2**31 / 2**31-1 (a broken ADC) and an unset device clock: outside the kind's physical range."""
    server = detectors(UNITS)
    server.produce_raw(1, -(2**31))
    server.produce_raw(1, 2**31 - 1)
    server.produce(1, 3.0)
    server.produce_raw(1, 2**31 - 1)
    server.produce_raw(2, 215, time_ms=5_000)  # 21.5 °C stamped 1970: the clock was never set
    server.produce(2, 21.5)

    async def poll() -> tuple[list[Take], ModbusDriver]:
        async with ModbusDriver(config=ModbusConfig(port=server.port, timeout_s=0.5), sensors=SENSORS) as driver:
            return await driver.poll({}), driver

    with caplog.at_level(logging.INFO, logger="edge.drivers.modbus"):
        takes, driver = asyncio.run(asyncio.wait_for(poll(), 5))
    assert sorted((r.sensor, r.time_ms, r.value) for t in takes for r in t.readings) == sorted(_expected(server))
    assert [t.cursor.seq for t in takes] == [4, 2]  # garbage samples are consumed, not read again
    assert driver.garbage == {"gas-b1-101": 3, "temp-b1-102": 1}
    assert driver.invalid == {"gas-b1-101": 0, "temp-b1-102": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert sum("gas-b1-101 (unit 1) garbage sample" in m for m in messages) == 2  # bad, good, bad: two changes
    assert sum("samples plausible again" in m for m in messages) == 2
    assert any("temp-b1-102 sample 1 has device time 5000 ms: skipped" in m for m in messages)
