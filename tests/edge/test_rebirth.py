"""``cmd/rebirth`` as a real resync and the hub's retained state: real Mosquitto, Modbus server and edge process."""

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from edge.outbox import Outbox
from tests.edge.support import Broker, Detectors, EdgeProcess, Hub, wait_until, write_config

UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}
Factory = Callable[..., Hub]


def _outbox_session(config: Path) -> int:
    outbox = Outbox.open(
        config.parent / "outbox.sqlite3", community="hongxing", gateway="gw-test", max_bytes=1 << 30, new_session=False
    )
    try:
        return outbox.session
    finally:
        outbox.close()


def _expected(server: Detectors) -> set[tuple[str, int, float]]:
    return {(p.sensor, p.time_ms, p.value) for p in server.produced}


def _states(hub: Hub) -> list[dict[str, object]]:
    with hub.lock:
        return [orjson.loads(payload) for payload in hub.states]


def test_rebirth_resends_every_unacked_reading_under_a_new_session(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker, acking=False)  # a hub that lost its database: it acks nothing of session 1
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS, ack_timeout_s=30)
    edge = edge_process(config)
    edge.start()
    for i in range(12):
        server.produce(1, 2.0 + i / 10)
        server.produce(2, 20.0)
        if i % 4 == 3:
            time.sleep(0.35)  # a few polls and publishes: several batches
    wait_until(lambda: hub.readings_of(1) == _expected(server), 8, "session 1 batches at the hub")
    assert len(hub.sessions()[1]) >= 2
    wait_until(lambda: any(s == {"status": "online", "session": 1, "time": s["time"]} for s in _states(hub)), 3, "b1")

    hub.command("rebirth")
    wait_until(lambda: 2 in hub.sessions(), 8, "batches of session 2")
    server.produce(1, 4.0)  # taken after the rebirth: goes out in session 2 as well
    wait_until(lambda: hub.readings_of(2) >= _expected(server), 8, "every unacked reading again in session 2")
    assert hub.sessions()[2][0] == 1  # re-batched from seq 1
    assert hub.sessions()[2] == list(range(1, len(hub.sessions()[2]) + 1))
    assert hub.readings_of(2) == _expected(server)
    births = [s for s in _states(hub) if s["status"] == "online"]
    assert births[-1]["session"] == 2
    assert not [s for s in _states(hub) if s["status"] == "offline"]  # a clean reconnect fires no Will
    assert "command rebirth: birth published with new session=2 (was 1)" in edge.text()
    assert _outbox_session(config) == 2  # persisted: the next start is session 3

    edge.kill()  # the broker fires the Will, which must carry the new session number
    wait_until(lambda: any(s["status"] == "offline" for s in _states(hub)), 5, "the Will")
    assert [s["session"] for s in _states(hub) if s["status"] == "offline"] == [2]


def test_routine_batches_wait_while_the_hub_is_offline_alarms_do_not(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    server = detectors(UNITS)
    hub = hub_factory(broker)
    hub.publish_hub_state("offline")  # retained: the edge learns it on subscribing
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS)
    edge = edge_process(config)
    edge.start()
    wait_until(lambda: "hub is offline" in edge.text(), 8, "the edge saw the hub offline")
    for _ in range(5):
        server.produce(2, 21.0)
    server.produce(1, 30.0)  # past the 25 %LEL local alarm
    wait_until(lambda: any(d[0] == "alarm" for d in hub.deliveries), 5, "the alarm despite the hub offline")
    time.sleep(1.0)  # several publish ticks
    with hub.lock:
        assert not [d for d in hub.deliveries if d[0] == "data"]
    hub.publish_hub_state("online")
    wait_until(lambda: hub.readings() == _expected(server), 8, "routine readings after the hub came back")
    assert "hub is online again" in edge.text()
    assert edge.terminate() == 0


@pytest.fixture(autouse=True)
def _fast_enough() -> object:
    started = time.monotonic()
    yield None
    assert time.monotonic() - started < 25
