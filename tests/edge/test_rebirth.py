"""``cmd/rebirth`` as a real resync and the hub's retained state: real Mosquitto, Modbus server and edge process."""

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from tests.edge.support import Broker, Detectors, EdgeProcess, Hub, inspect_outbox, wait_until, write_config

UNITS = {1: ("gas-b1-101", "gas"), 2: ("temp-b1-102", "temperature")}
Factory = Callable[..., Hub]


def _outbox_session(config: Path) -> int:
    outbox = inspect_outbox(config.parent / "outbox.sqlite3")
    try:
        return int(outbox.session)
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
    hub = hub_factory(broker, acking=False)  # a hub that lost its database: it acks nothing
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS, ack_timeout_s=30)
    edge = edge_process(config)
    edge.start()
    for i in range(12):
        server.produce(1, 2.0 + i / 10)
        server.produce(2, 20.0)
        if i % 4 == 3:
            time.sleep(0.35)  # a few polls and publishes: several batches
    wait_until(lambda: len(hub.sessions()) == 1, 8, "the first session's batches")
    first = min(hub.sessions())  # numbered from the Unix time of the outbox's creation
    second = first + 1
    wait_until(lambda: hub.readings_of(first) == _expected(server), 8, "first session batches at the hub")
    assert len(hub.sessions()[first]) >= 2
    wait_until(
        lambda: any(s == {"status": "online", "session": first, "time": s["time"]} for s in _states(hub)), 3, "b1"
    )

    hub.command("rebirth")
    wait_until(lambda: second in hub.sessions(), 8, "batches of the second session")
    server.produce(1, 4.0)  # taken after the rebirth: goes out in the new session as well
    wait_until(lambda: hub.readings_of(second) >= _expected(server), 8, "every unacked reading again")
    assert hub.sessions()[second][0] == 1  # re-batched from seq 1
    assert hub.sessions()[second] == list(range(1, len(hub.sessions()[second]) + 1))
    assert hub.readings_of(second) == _expected(server)
    births = [s for s in _states(hub) if s["status"] == "online"]
    assert births[-1]["session"] == second
    assert not [s for s in _states(hub) if s["status"] == "offline"]  # a clean reconnect fires no Will
    assert f"command rebirth: birth published with new session={second} (was {first})" in edge.text()
    assert _outbox_session(config) == second  # persisted: the next start is the one after

    edge.kill()  # the broker fires the Will, which must carry the new session number
    wait_until(lambda: any(s["status"] == "offline" for s in _states(hub)), 5, "the Will")
    assert [s["session"] for s in _states(hub) if s["status"] == "offline"] == [second]


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


def test_an_ack_that_does_not_advance_still_gets_the_gap_republished(
    tmp_path: Path,
    broker: Broker,
    detectors: Callable[..., Detectors],
    hub_factory: Factory,
    edge_process: Callable[[Path], EdgeProcess],
) -> None:
    """A hub that missed seq 2 keeps acking seq 1; an ack for a seq never published is a hub bug. Neither may
    stall the gateway: the first must not restart the republish clock, the second must delete nothing."""
    server = detectors(UNITS)
    hub = hub_factory(broker, acking=False)
    config = write_config(tmp_path, broker_port=broker.port, modbus_port=server.port, sensors=UNITS, ack_timeout_s=1.5)
    edge = edge_process(config)
    edge.start()
    for i in range(9):
        server.produce(1, 2.0 + i / 10)
        if i % 3 == 2:
            time.sleep(0.6)
    wait_until(lambda: len(next(iter(hub.sessions().values()), [])) >= 3, 8, "three batches")
    session = min(hub.sessions())
    hub.ack_now(session, 999_999)
    wait_until(lambda: "is ahead of the last seq published" in edge.text(), 5, "the ack ahead refused")
    republished_before = edge.text().count("republishing")
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:  # the same ack again and again, as a hub stuck below a gap would
        hub.ack_now(session, 1)
        time.sleep(0.25)
    assert edge.text().count("republishing") > republished_before, "the gap was never republished"
    assert _expected(server) <= hub.readings(), "nothing was deleted by the ack ahead"
