"""Fixtures for the edge tests: real Mosquitto, a real pymodbus server of detectors, a hub stand-in, the edge
as a process. The parts themselves live in ``support.py``."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.edge.support import MOSQUITTO, Broker, Detector, Detectors, EdgeProcess, Hub
from tests.edge.test_modbus_tcp import Gateway


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Mosquitto is required in CI and missing at {MOSQUITTO}")
        pytest.skip(f"Mosquitto not installed at {MOSQUITTO}")
    instance = Broker(tmp_path)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def detectors() -> Iterator[Callable[[dict[int, tuple[str, str]]], Detectors]]:
    """Factory: ``detectors({unit_id: (sensor_id, kind)})`` starts a server; stopped at teardown."""
    started: list[Detectors] = []

    def make(units: dict[int, tuple[str, str]]) -> Detectors:
        server = Detectors({u: (sensor, Detector(kind)) for u, (sensor, kind) in units.items()})
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def hub_factory() -> Iterator[Callable[..., Hub]]:
    hubs: list[Hub] = []

    def make(broker: Broker, *, acking: bool = True, publish_state: bool = True) -> Hub:
        hub = Hub(broker, acking=acking, publish_state=publish_state)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.close()


@pytest.fixture
def edge_process() -> Iterator[Callable[[Path], EdgeProcess]]:
    processes: list[EdgeProcess] = []

    def make(config: Path) -> EdgeProcess:
        process = EdgeProcess(config)
        processes.append(process)
        return process

    yield make
    for process in processes:
        process.kill()


@pytest.fixture
def gateway() -> Iterator[Callable[[tuple[int, ...]], Gateway]]:
    """Real firmware-sim Modbus TCP servers on loopback, one per call with the given unit ids; closed after."""
    made: list[Gateway] = []

    def make(unit_ids: tuple[int, ...]) -> Gateway:
        instance = Gateway(unit_ids)
        made.append(instance)
        instance.start()
        return instance

    yield make
    for instance in made:
        instance.close()
