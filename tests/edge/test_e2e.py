"""The delivery guarantee end to end: real Mosquitto, a real Modbus server, the edge as a process, a hub stand-in."""

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge.agent import HUB_STATE_WAIT_S, STOP_ACK_WAIT_S
from tests.edge.support import (
    Broker,
    Detectors,
    EdgeProcess,
    Hub,
    Producer,
    inspect_outbox,
    wait_until,
    write_config,
)

UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}
Factory = Callable[..., Hub]


def _stored(config: Path) -> int:
    outbox = inspect_outbox(config.parent / "outbox.sqlite3")
    try:
        return int(outbox.counters().stored_readings)
    finally:
        outbox.close()


def _expected(server: Detectors) -> set[tuple[str, int, float]]:
    return {(p.sensor, p.time_ms, p.value) for p in server.produced}


def _assert_all_arrive(hub: Hub, server: Detectors, edge: EdgeProcess, timeout_s: float = 8.0) -> None:
    try:
        wait_until(lambda: hub.readings() >= _expected(server), timeout_s, "every produced reading at the hub")
    except AssertionError:
        missing = _expected(server) - hub.readings()
        raise AssertionError(f"{len(missing)} readings missing; edge log:\n{edge.text()}") from None
    assert hub.readings() == _expected(server)
    assert not hub.rejections


def test_every_reading_once_and_outbox_empties_after_acks(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS)
    edge = edge_process(config)
    edge.start()
    # Produce once the edge runs: a detector's ring holds 15 samples, and an edge still starting on a busy machine
    # (CI saw it) would find the first ones of 30 samples 20 ms apart overwritten, as a real detector's would be.
    wait_until(lambda: bool(hub.states), 30, "the edge's birth")
    for i in range(30):
        server.produce(1, 30.0 if i == 10 else 3.0)  # one gas reading past the 25 %LEL local alarm
        server.produce(2, 21.0)
        time.sleep(0.05)  # 15 samples: 0.75 s of ring against the edge's 0.1 s polls
    hub.send_raw_ack(b"not json")  # counted and logged, never a crash
    _assert_all_arrive(hub, server, edge)
    wait_until(lambda: _stored(config) == 0, 5, "outbox empty after hub-acks")
    with hub.lock:
        alarm_batches = [d for d in hub.deliveries if d[0] == "alarm"]
        assert alarm_batches and all(len(hub.batches[(s, q)].readings) == 1 for _, s, q in alarm_batches)
        assert hub.reading_count() == len(server.produced)  # distinct (session, seq) hold no reading twice
    assert edge.terminate() == 0
    log = edge.text()
    assert "LOCAL ALARM gas-b1-101 30.0 %LEL >= 25.0" in log
    assert "published seq=" in log and "hub-ack seq=" in log and "published alarm seq=" in log
    assert "bad hub-ack ignored (1 so far)" in log
    wait_until(lambda: bool(hub.states), 3, "state messages")
    assert orjson.loads(hub.states[-1])["status"] == "offline"


def test_no_ack_keeps_readings_and_republishes(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker, acking=False)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS, ack_timeout_s=1.0)
    edge = edge_process(config)
    edge.start()
    for _ in range(10):
        server.produce(1, 2.0)
        server.produce(2, 19.5)
    _assert_all_arrive(hub, server, edge)
    wait_until(lambda: "republished" in edge.text(), 5, "a republish after the ack timeout")

    def delivered_again() -> bool:  # the edge logs before the broker has handed the copy to the hub
        with hub.lock:
            return len(hub.deliveries) > len(hub.batches)

    wait_until(delivered_again, 5, "the same (session, seq) delivered again")
    with hub.lock:
        session, top = max(hub.batches)
    assert _stored(config) == len(server.produced)  # no ack, no deletion
    hub.ack_now(session, top)
    wait_until(lambda: _stored(config) == 0, 5, "outbox empty after the late ack")
    assert edge.terminate() == 0


@pytest.mark.parametrize("ack_late", [True, False])
def test_a_stop_waits_briefly_for_the_acks_of_published_batches(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
    ack_late: bool,
) -> None:
    """A planned stop with a batch in flight: an ack that comes within the wait empties the outbox; none, and the
    batch stays for the next session (the stop is not held up past the wait)."""
    server = detectors(UNITS)
    hub = hub_factory(broker, acking=False)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS, ack_timeout_s=30)
    edge = edge_process(config)
    edge.start()
    server.produce(1, 2.0)
    server.produce(2, 19.5)
    _assert_all_arrive(hub, server, edge)
    with hub.lock:
        session, top = max(hub.batches)
    assert edge.process is not None
    edge.process.send_signal(signal.SIGTERM)
    if ack_late:
        time.sleep(STOP_ACK_WAIT_S / 4)
        hub.ack_now(session, top)
    assert edge.terminate() == 0
    stopped = re.findall(r"stopped: session=\d+ .* unacked_batches=(\d+)", edge.text())
    assert stopped == (["0"] if ack_late else ["1"]), edge.text()
    assert _stored(config) == (0 if ack_late else len(server.produced))


def test_broker_killed_and_restarted(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS)
    edge = edge_process(config)
    edge.start()
    producer = Producer(server, [1, 2], interval_s=0.1, step=0.7, wrap=20.0, offsets={2: 20.0})
    try:
        wait_until(lambda: "hub-ack seq=" in edge.text(), 8, "first ack")
        broker.stop()
        time.sleep(1.0)  # the gateway keeps reading into its outbox while the broker is gone
        broker.start()
        wait_until(lambda: edge.text().count("connected to broker") >= 2, 10, "the edge reconnected")
        time.sleep(0.5)
    finally:
        producer.stop()
    _assert_all_arrive(hub, server, edge, timeout_s=10)
    wait_until(lambda: _stored(config) == 0, 5, "outbox empty")
    assert edge.terminate() == 0


def test_edge_killed_and_restarted_loses_nothing(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS)
    first = edge_process(config)
    first.start()
    # The ring holds 15 samples: 2.25 s of downtime.
    producer = Producer(server, [1, 2], interval_s=0.15, step=0.7, wrap=20.0, offsets={2: 20.0})
    try:
        wait_until(lambda: "hub-ack seq=" in first.text(), 8, "first ack")
        time.sleep(0.3)
        first.kill()  # SIGKILL: no goodbye, the Will announces it
        time.sleep(0.5)
        second = edge_process(config)
        second.start()
        first_session = int(re.search(r"starting: session=(\d+)", first.text()).group(1))  # type: ignore[union-attr]
        wait_until(
            lambda: f"session={first_session + 1}" in second.text() and "hub-ack seq=" in second.text(),
            8,
            "second run acked",
        )
        time.sleep(0.3)
    finally:
        producer.stop()
    _assert_all_arrive(hub, server, second)
    with hub.lock:
        assert {session for session, _ in hub.batches} == {first_session, first_session + 1}
    wait_until(lambda: _stored(config) == 0, 5, "outbox empty")
    assert second.terminate() == 0


def test_local_alarm_trips_without_broker(
    tmp_path: Path, detectors: Callable[..., Detectors], edge_process: Callable[[Path], EdgeProcess]
) -> None:
    from tests.edge.support import free_port

    server = detectors(UNITS)
    marker = tmp_path / "relay.txt"
    command = {"alarm_command": f"sh -c 'echo $ANJU_SENSOR $ANJU_VALUE >> {marker}'"}
    config = write_config(tmp_path, broker_port=free_port(), modbus_port=server.port, sensors=UNITS, extra=command)
    edge = edge_process(config)
    edge.start()
    server.produce(2, 70.0)  # temperature past 54 °C
    wait_until(marker.exists, 8, "the alarm command ran")
    wait_until(lambda: marker.read_text().strip() == "temp-b1-102 70.0", 2, "alarm command output")
    assert "LOCAL ALARM temp-b1-102 70.0 Cel >= 54.0" in edge.text()
    assert edge.terminate() == 0
    assert _stored(config) == 1


@pytest.fixture(autouse=True)
def _fast_enough() -> object:
    started = time.monotonic()
    yield None
    assert time.monotonic() - started < 20


def test_readings_wait_for_the_hub_state_after_a_connect_alarms_first(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    """A broker that lost its sessions has no hub state: publishing then would go to nobody. The edge holds its
    readings until the hub's retained state appears (the hub publishes it after subscribing), then sends the
    alarms ahead of the backlog; with no hub state at all it goes on without one after HUB_STATE_WAIT_S."""
    server = detectors(UNITS)
    hub = hub_factory(broker, publish_state=False)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS)
    edge = edge_process(config)
    edge.start()
    wait_until(lambda: "connected to broker" in edge.text(), 10, "the edge connected")
    for i in range(6):
        server.produce(1, 30.0 if i == 3 else 2.0)  # one reading past the 25 %LEL local alarm
        server.produce(2, 21.0)
        time.sleep(0.1)
    wait_until(lambda: "LOCAL ALARM" in edge.text(), 5, "the local alarm (it never waits for the hub)")
    time.sleep(2.0)  # the readings and the alarm are taken: nothing may go out yet
    with hub.lock:
        assert not hub.deliveries, "published before any hub state"
    hub.publish_hub_state("online")
    _assert_all_arrive(hub, server, edge)
    with hub.lock:
        assert hub.deliveries[0][0] == "alarm", hub.deliveries
    assert "no hub state within" not in edge.text()
    assert edge.terminate() == 0


def test_without_any_hub_state_the_edge_publishes_after_the_wait(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker, publish_state=False)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS)
    edge = edge_process(config)
    edge.start()
    server.produce(1, 2.0)
    server.produce(2, 21.0)
    wait_until(lambda: "connected to broker" in edge.text(), 10, "the edge connected")
    connected_at = time.monotonic()
    wait_until(lambda: bool(hub.deliveries), HUB_STATE_WAIT_S + 5, "readings published without a hub state")
    assert time.monotonic() - connected_at >= HUB_STATE_WAIT_S - 1.0
    assert f"no hub state within {HUB_STATE_WAIT_S:.0f} s of connecting: publishing without it" in edge.text()
    _assert_all_arrive(hub, server, edge)
    assert edge.terminate() == 0
